"""MLflow pushes: one row per push a user asked for, written by the web tier when asked and by a
worker task (queue `notify`) as it runs and ends. TensorBoard exports are downloads and keep no row."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class MlflowExport(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Queued"
        RUNNING = "running", "Pushing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    ACTIVE = (Status.PENDING, Status.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="mlflow_exports")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Checked when asked (webapp/exports/services.py) and again by the worker before it connects.
    tracking_uri = models.CharField(max_length=500)
    experiment = models.CharField(max_length=200)
    model_name = models.CharField(max_length=200, blank=True, help_text="registered model name; blank: none")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True)
    run_id = models.CharField(max_length=64, blank=True)
    experiment_id = models.CharField(max_length=64, blank=True)
    run_url = models.CharField(max_length=1000, blank=True)
    model_version = models.CharField(max_length=32, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="params, metrics and artifacts logged")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"MLflow export of {self.job_id} to {self.tracking_uri}"

    def to_dict(self) -> dict:
        return {
            "id": str(self.id), "job": str(self.job_id), "status": self.status, "error": self.error,
            "tracking_uri": self.tracking_uri, "experiment": self.experiment,
            "register_model": bool(self.model_name), "model_name": self.model_name,
            "run_id": self.run_id, "experiment_id": self.experiment_id, "run_url": self.run_url,
            "model_version": self.model_version, "counts": self.counts,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }
