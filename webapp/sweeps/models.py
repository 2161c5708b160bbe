from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Sweep(models.Model):
    """A hyperparameter search: `budget` ordinary jobs whose settings Optuna picks
    (webapp/sweeps/services.py advances it; webapp/sweeps/study.py holds the Optuna side)."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Finished"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    class Pruner(models.TextChoices):
        MEDIAN = "median", "Median"
        HALVING = "halving", "Successive halving"
        NONE = "none", "None"

    FINAL = (Status.SUCCEEDED, Status.CANCELLED, Status.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sweeps")
    # A team's project (webapp/projects), or the owner's personal space when empty.
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="sweeps")
    name = models.CharField(max_length=200)
    dataset = models.ForeignKey("datasets.Dataset", null=True, on_delete=models.SET_NULL, related_name="sweeps")
    architecture = models.CharField(max_length=50)
    # Every trial's settings are these with the trial's parameters over them.
    base_model_config = models.JSONField(default=dict)
    base_train_config = models.JSONField(default=dict)
    space = models.JSONField(default=dict, help_text="the validated search space (webapp/sweeps/space.py)")
    metric = models.CharField(max_length=20)
    direction = models.CharField(max_length=8, choices=[("minimize", "minimise"), ("maximize", "maximise")])
    budget = models.PositiveIntegerField(help_text="trials in all")
    concurrency = models.PositiveIntegerField(help_text="unfinished trials at most at once")
    seed = models.PositiveIntegerField(default=0)
    pruner = models.CharField(max_length=10, choices=Pruner.choices, default=Pruner.MEDIAN)
    priority = models.IntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING, db_index=True)
    error = models.TextField(blank=True)
    wait_reason = models.CharField(max_length=255, blank=True, help_text="why no trial was submitted just now")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    def best_trial(self) -> Trial | None:
        done = self.trials.filter(state=Trial.State.COMPLETE, value__isnull=False)
        return done.order_by("value" if self.direction == "minimize" else "-value", "number").first()

    def to_dict(self, trials: bool = True) -> dict:
        rows = list(self.trials.select_related("job")) if trials else []
        best = self.best_trial()
        out = {
            "id": str(self.id),
            "name": self.name,
            "owner": self.owner.get_username(),
            "project": str(self.project_id) if self.project_id else None,
            "dataset": str(self.dataset_id) if self.dataset_id else None,
            "architecture": self.architecture,
            "base_model_config": self.base_model_config,
            "base_train_config": self.base_train_config,
            "space": self.space,
            "metric": self.metric,
            "direction": self.direction,
            "budget": self.budget,
            "concurrency": self.concurrency,
            "seed": self.seed,
            "pruner": self.pruner,
            "status": self.status,
            "error": self.error,
            "wait_reason": self.wait_reason,
            "best": best.to_dict() if best else None,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }
        if trials:
            out["trials"] = [t.to_dict() for t in rows]
        return out


class Trial(models.Model):
    """One trial of a sweep: one row per trial number, and at most one job (its run). The job is
    an ordinary job: requeued when its worker is lost, resumed, still this one trial."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"  # its job is queued or running
        COMPLETE = "complete", "Complete"
        PRUNED = "pruned", "Pruned"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    sweep = models.ForeignKey(Sweep, on_delete=models.CASCADE, related_name="trials")
    number = models.PositiveIntegerField()
    job = models.OneToOneField("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="trial")
    params = models.JSONField(default=dict)
    state = models.CharField(max_length=20, choices=State.choices, default=State.RUNNING, db_index=True)
    value = models.FloatField(null=True, blank=True)
    intermediate_values = models.JSONField(default=dict, blank=True, help_text="epoch -> validation metric")
    system_attrs = models.JSONField(default=dict, blank=True, help_text="the pruner's notes (Optuna)")
    last_event_seq = models.PositiveIntegerField(default=0, help_text="the job's events read up to here")
    pruned_at_epoch = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["sweep", "number"]
        constraints = [models.UniqueConstraint(fields=["sweep", "number"], name="unique_trial_number")]

    def to_dict(self) -> dict:
        return {
            "number": self.number,
            "job": str(self.job_id) if self.job_id else None,
            "job_status": self.job.status if self.job_id else None,
            "params": self.params,
            "state": self.state,
            "value": self.value,
            "intermediate_values": self.intermediate_values,
            "pruned_at_epoch": self.pruned_at_epoch,
            "error": self.error,
        }
