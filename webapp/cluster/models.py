from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


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
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ONLINE)
    current_job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    draining = models.BooleanField(
        default=False, help_text="finish the current job, take no more (set by the Drain admin action)")
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def accepts_jobs(self) -> bool:
        return self.is_alive and not self.draining

    @property
    def is_alive(self) -> bool:
        stale = timedelta(seconds=settings.TRAINYARD_HEARTBEAT_SECONDS * 3)
        return self.status == self.Status.ONLINE and timezone.now() - self.last_heartbeat < stale
