from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import ExpressionWrapper
from django.db.models.functions import Now
from django.utils import timezone


MISSED_BEATS = 3  # a worker silent for this many heartbeat intervals is lost


def heartbeat_cutoff():
    """The one liveness rule: an online worker is alive while its last heartbeat is at or after
    this moment (three missed beats). The scheduler's live workers, the Workers page and the
    silent-worker sweep all read it from here."""
    return timezone.now() - timedelta(seconds=settings.TRAINYARD_HEARTBEAT_SECONDS * MISSED_BEATS)


def db_heartbeat_cutoff():
    """The same rule as an SQL expression on the database's clock, for the queries: heartbeats
    are stamped with `Now()` (workers/adapters/registry.py), so a worker whose clock is skewed
    neither looks dead nor declares the others dead."""
    return ExpressionWrapper(Now() - timedelta(seconds=settings.TRAINYARD_HEARTBEAT_SECONDS * MISSED_BEATS),
                             output_field=models.DateTimeField())


class WorkerQuerySet(models.QuerySet):
    def alive(self):
        return self.filter(status=Worker.Status.ONLINE, last_heartbeat__gte=db_heartbeat_cutoff())

    def silent(self):
        """Online by their row, but past the liveness rule (killed, machine down)."""
        return self.filter(status=Worker.Status.ONLINE, last_heartbeat__lt=db_heartbeat_cutoff())


class Worker(models.Model):
    """A Celery worker process that registered itself; it heartbeats while it lives."""

    class Status(models.TextChoices):
        ONLINE = "online", "Online"
        OFFLINE = "offline", "Offline"
        RETIRED = "retired", "Retired"

    name = models.CharField(max_length=255, unique=True, help_text="Celery node name")
    hostname = models.CharField(max_length=255)
    queues = models.CharField(max_length=255, blank=True)
    device = models.CharField(max_length=255, help_text="cuda:0 / cpu")
    device_name = models.CharField(max_length=255, blank=True)
    gpus = models.JSONField(default=list, blank=True)
    devices = models.PositiveIntegerField(
        default=1, help_text="devices one job may use here: GPUs, or gloo processes on a CPU worker")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ONLINE)
    current_job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    draining = models.BooleanField(
        default=False, help_text="finish the current job, take no more (set by the Drain admin action)")
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(default=timezone.now)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def accepts_jobs(self) -> bool:
        return self.is_alive and not self.draining

    @property
    def is_alive(self) -> bool:
        return self.status == self.Status.ONLINE and self.last_heartbeat >= heartbeat_cutoff()
