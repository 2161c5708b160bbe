from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone


class Dataset(models.Model):
    class Status(models.TextChoices):
        # A failed ingest removes the row and its files; an IngestFailure keeps the reason.
        INGESTING = "ingesting", "Ingesting"
        READY = "ready", "Ready"

    class Kind(models.TextChoices):
        TABULAR = "tabular", "Tabular (CSV/TSV)"
        IMAGE = "image", "Images (ZIP of class folders)"
        TEXT = "text", "Text classification (CSV/TSV/JSONL)"
        CORPUS = "corpus", "Text corpus for language modelling (.txt)"
        SEQUENCE = "sequence", "Numeric sequences (CSV)"
        CHAT = "chat", "Instruction / chat (JSONL: messages or prompt/response)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets")
    # A team's project (webapp/projects), or the owner's personal space when empty.
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="datasets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TABULAR)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.INGESTING)
    error = models.TextField(blank=True)
    progress = models.FloatField(default=0.0, help_text="ingest progress, 0..1")
    shared_with = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="shared_datasets",
                                         help_text="users who may see and train on it (read-only)")
    original_filename = models.CharField(max_length=255)
    size_bytes = models.BigIntegerField(default=0)
    # Ingest options (label column, validation fraction, seed) as given by the user.
    options = models.JSONField(default=dict, blank=True)
    # What ingest found: task, feature names, classes, counts, normalisation statistics.
    info = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def directory(self) -> Path:
        return Path(settings.DATA_DIR) / "datasets" / str(self.id)

    @property
    def upload_path(self) -> Path:
        return Path(settings.DATA_DIR) / "uploads" / f"{self.id}.upload"

    @property
    def size_label(self) -> str:
        """How much data it holds, in its kind's unit: rows, images, a corpus' tokens."""
        info = self.info or {}
        n = info.get("num_rows")
        if self.kind == "corpus":
            n, unit = info.get("num_tokens", n), "byte" if info.get("level") == "byte" else "character"
        else:
            unit = {"image": "image", "sequence": "sequence", "chat": "conversation"}.get(self.kind, "row")
        if not isinstance(n, int):
            return ""
        return f"{n:,} {unit}{'' if n == 1 else 's'}"

    @property
    def default_architecture(self) -> str:
        """The architecture the new-job form picks first for this dataset (kinds registry)."""
        from models_zoo.kinds import KINDS

        entry = KINDS.get(self.kind)
        return entry.default_architecture if entry else ""

    @property
    def is_ready(self) -> bool:
        return self.status == self.Status.READY

    def to_dict(self) -> dict:
        return {
            "id": str(self.id),
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "status": self.status,
            "progress": self.progress,
            "error": self.error,
            "original_filename": self.original_filename,
            "size_bytes": self.size_bytes,
            "info": self.info,
            "owner": self.owner.get_username(),
            "project": str(self.project_id) if self.project_id else None,
            "options": self.options,
            "created_at": self.created_at.isoformat(),
        }


class UploadSession(models.Model):
    """A file arriving in chunks (bounded request bodies), appended in order until complete."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    filename = models.CharField(max_length=255)
    size = models.BigIntegerField()
    received = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # tus uploads: the client's Upload-Metadata (decoded), echoed on HEAD and read when complete.
    metadata = models.JSONField(default=dict, blank=True)

    @property
    def path(self) -> Path:
        return Path(settings.DATA_DIR) / "uploads" / "sessions" / f"{self.id}.part"

    @property
    def complete(self) -> bool:
        return self.received == self.size

    def to_dict(self) -> dict:
        return {"id": str(self.id), "filename": self.filename, "size": self.size, "received": self.received,
                "chunk_bytes": settings.UPLOAD_CHUNK_BYTES}


class IngestFailure(models.Model):
    """What is left of an upload that ingest refused: the reason, shown to its owner until dismissed.

    The dataset row and all its files are gone (bad input leaves nothing behind); `id` is the id the
    dataset had, so a page or API client that was watching it can still learn why.
    """

    id = models.UUIDField(primary_key=True, editable=False, help_text="the id the failed dataset had")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ingest_failures")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Dataset.Kind.choices)
    original_filename = models.CharField(max_length=255)
    error = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def to_dict(self) -> dict:
        return {
            "id": str(self.id),
            "name": self.name,
            "kind": self.kind,
            "status": "failed",
            "error": self.error,
            "original_filename": self.original_filename,
            "owner": self.owner.get_username(),
            "created_at": self.created_at.isoformat(),
        }
