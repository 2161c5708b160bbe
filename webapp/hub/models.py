"""Pretrained models that Hugging Face jobs start from, besides Hub ids.

A LocalModel is a `save_pretrained` folder on the server: registered by an admin (owner empty:
everyone may pick it) or uploaded by a user as a ZIP (owner set: only they and staff see it).
Jobs name it as "local:<name>"; the worker loads it from `path` with safetensors only.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from models_zoo.contracts import ModelSourceError, check_folder

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def validate_name(value: str) -> None:
    if not NAME_RE.match(value or ""):
        raise ValidationError("use letters, digits, '.', '_' and '-' (starting with a letter or digit), "
                              "at most 100 characters")


class LocalModel(models.Model):
    class Task(models.TextChoices):
        TEXT_CLASSIFICATION = "text_classification", "Text classification"
        CAUSAL_LM = "causal_lm", "Causal language model"
        IMAGE_CLASSIFICATION = "image_classification", "Image classification"

    class Status(models.TextChoices):
        EXTRACTING = "extracting", "Extracting"  # an upload a worker is unpacking (trainyard.extract_model_zip)
        READY = "ready", "Ready"
        FAILED = "failed", "Refused"  # the folder is gone; `error` says why, the owner may delete the row

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, validators=[validate_name],
                            help_text="jobs pick it as local:NAME")
    task = models.CharField(max_length=30, choices=Task.choices)
    path = models.CharField(max_length=1000, help_text="absolute path of the save_pretrained folder, the same on "
                                                        "every worker (a shared filesystem)")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="local_models",
                              help_text="empty: registered by an admin, every user may pick it; set: an upload "
                                        "that only its owner (and staff) can see")
    # A team's project (webapp/projects), or the owner's personal space when empty.
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="models")
    description = models.TextField(blank=True)
    size_bytes = models.BigIntegerField(default=0)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.READY)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["name"], condition=Q(owner__isnull=True), name="hub_shared_name_unique"),
            models.UniqueConstraint(fields=["owner", "name"], name="hub_owner_name_unique"),
        ]

    def __str__(self) -> str:
        return f"local:{self.name}"

    @property
    def is_upload(self) -> bool:
        return self.owner_id is not None

    @property
    def is_ready(self) -> bool:
        return self.status == self.Status.READY

    @property
    def zip_path(self) -> Path:
        """Where an upload waits for its extraction (beside the folder it becomes)."""
        return Path(settings.DATA_DIR) / "models" / f"{self.pk}.zip"

    @property
    def reference(self) -> str:
        return f"local:{self.name}"

    def clean(self) -> None:
        """Admin registration: the folder must exist here and be loadable without pickles or
        remote code (the same checks the worker makes before loading)."""
        path = Path(self.path or "")
        if not path.is_absolute():
            raise ValidationError({"path": "give an absolute path"})
        if not path.is_dir():
            raise ValidationError({"path": f"there is no folder at {path} on this server; give the path of a "
                                           f"save_pretrained folder (the same path on every worker)"})
        try:
            check_folder(path, "this folder")
        except ModelSourceError as exc:
            raise ValidationError({"path": str(exc)}) from None
        clash = LocalModel.objects.filter(name=self.name).exclude(pk=self.pk)
        if self.owner_id is None and clash.filter(owner__isnull=True).exists():
            raise ValidationError({"name": "a registered model has this name already"})

    def to_dict(self) -> dict:
        return {"id": str(self.id), "name": self.name, "reference": self.reference, "task": self.task,
                "description": self.description, "uploaded": self.is_upload,
                "owner": self.owner.get_username() if self.owner_id else None, "size_bytes": self.size_bytes,
                "project": str(self.project_id) if self.project_id else None,
                "status": self.status, "error": self.error, "created_at": self.created_at.isoformat()}
