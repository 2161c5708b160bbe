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


class BatchPrediction(models.Model):
    """Try many: one uploaded file of inputs in the dataset's format (a table's rows, a ZIP of
    images, a file of texts or sequences), every one predicted by a worker task on `infer`
    into a CSV. Only the user who asked for it sees it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Predicting"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    ACTIVE = (Status.PENDING, Status.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="batch_predictions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    filename = models.CharField(max_length=200, help_text="the user's file name, for display only")
    size_bytes = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    rows_done = models.IntegerField(default=0)
    rows_total = models.IntegerField(null=True, blank=True)
    rows_failed = models.IntegerField(default=0)
    # The first bad rows, each "line 5: 'x' is not a number" (the CSV has every one).
    problems = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "job", "created_at"])]

    @property
    def folder(self) -> Path:
        return Path(settings.DATA_DIR) / "inference" / "batches"

    @property
    def input_path(self) -> Path:
        """The upload, under a generated name that keeps the user's extension (the readers go by it)."""
        suffix = Path(self.filename).suffix.lower()
        return self.folder / f"{self.id}.in{suffix if suffix.isascii() and suffix[1:].isalnum() else ''}"

    @property
    def output_path(self) -> Path:
        return self.folder / f"{self.id}.csv"

    def stored_bytes(self) -> int:
        total = 0
        for p in (self.input_path, self.output_path):
            try:
                total += p.stat().st_size
            except OSError:
                pass
        return total

    def to_dict(self) -> dict:
        from django.urls import reverse

        done = self.status == self.Status.DONE
        return {"id": str(self.id), "job": str(self.job_id), "status": self.status,
                "status_label": self.get_status_display(), "filename": self.filename,
                "rows_done": self.rows_done, "rows_total": self.rows_total, "rows_failed": self.rows_failed,
                "problems": self.problems, "error": self.error, "seconds": self.seconds,
                "created_at": self.created_at.isoformat(),
                "download": reverse("jobs:batch-download", args=[self.job_id, self.id]) if done else None}
