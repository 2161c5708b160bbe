"""Projects: a team's shared space. A job, dataset, sweep or uploaded model belongs to one
project or to its owner's personal space (`project` empty); members see the project's items
with the rights of their role (webapp/projects/access.py holds the one rule)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower


class Project(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    # Running GPUs at once, over all the project's jobs (webapp/jobs/scheduler.py); empty: no quota.
    gpu_quota = models.PositiveIntegerField(null=True, blank=True,
                                            help_text="GPUs the project's jobs may use at once; empty: no quota")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = [Lower("name")]
        constraints = [models.UniqueConstraint(Lower("name"), name="project_name_unique_ci")]

    def __str__(self) -> str:
        return self.name

    def to_dict(self, role: str | None = None) -> dict:
        return {"id": str(self.id), "name": self.name, "description": self.description, "gpu_quota": self.gpu_quota,
                "role": role, "created_at": self.created_at.isoformat()}


class Membership(models.Model):
    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer"  # sees and downloads
        MEMBER = "member", "Member"  # also creates, and cancels their own
        MAINTAINER = "maintainer", "Maintainer"  # manages anything in the project, and its members

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="project_memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user__username"]
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]
        indexes = [models.Index(fields=["user", "role"], name="membership_user_role")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"

    def to_dict(self) -> dict:
        return {"username": self.user.get_username(), "role": self.role, "since": self.created_at.isoformat()}
