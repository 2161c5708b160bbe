"""Try-the-model requests and ONNX exports: one row each, written by the web tier when asked
and by a short worker task (queue `infer`) when done."""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.db import models


class Prediction(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="predictions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # {"text": ...} | {"features": {column: value}} | {"sequence": "1,2,3"} | {"prompt", "temperature", ...};
    # an uploaded image is kept as a file (image_name is the user's file name, for display only).
    inputs = models.JSONField(default=dict, blank=True)
    image_name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    seconds = models.FloatField(null=True, blank=True, help_text="time the worker spent on it")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    @property
    def image_path(self) -> Path:
        return Path(settings.DATA_DIR) / "inference" / f"{self.id}.img"

    def to_dict(self) -> dict:
        return {"id": str(self.id), "job": str(self.job_id), "status": self.status, "inputs": self.inputs,
                "image_name": self.image_name, "result": self.result, "error": self.error,
                "seconds": self.seconds, "created_at": self.created_at.isoformat()}


class OnnxExport(models.Model):
    """The ONNX export of a job's model: asked for on the job page, done by a worker task."""

    class Status(models.TextChoices):
        PENDING = "pending", "Exporting"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="onnx_export")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    max_abs_diff = models.FloatField(null=True, blank=True, help_text="onnxruntime vs PyTorch outputs")
    meta = models.JSONField(default=dict, blank=True)
    requested_at = models.DateTimeField(auto_now=True)

    def to_dict(self) -> dict:
        return {"job": str(self.job_id), "status": self.status, "error": self.error,
                "max_abs_diff": self.max_abs_diff, "meta": self.meta}
