from __future__ import annotations

from django.conf import settings
from django.db import models
from knox.models import AbstractAuthToken


class AuditEvent(models.Model):
    """Who did what to which object: created, cancelled, downloaded, deleted, shared, signed in."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    actor_name = models.CharField(max_length=150, blank=True, help_text="kept if the user is deleted")
    action = models.CharField(max_length=50, db_index=True)
    object_type = models.CharField(max_length=50, blank=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.object_type} {self.object_repr}"


class NotificationSettings(models.Model):
    """How a user hears that one of their jobs finished, failed or was cancelled (besides the
    in-page toast): an e-mail and/or a webhook POST, both sent by a worker task."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    email = models.BooleanField(default=False, help_text="e-mail me when a job ends")
    webhook_url = models.URLField(max_length=500, blank=True, help_text="POST JSON here when a job ends")
    last_webhook = models.CharField(max_length=300, blank=True, help_text="result of the last delivery")
    webhook_secret = models.CharField(max_length=80, blank=True,
                                      help_text="Standard Webhooks signing secret (whsec_…), shown to its owner once")

    @property
    def wanted(self) -> bool:
        return bool((self.email and self.user.email) or self.webhook_url)


class ApiToken(AbstractAuthToken):
    """An API token (django-rest-knox's model plus a name): only the SHA-512 digest of the key
    and its first characters (`token_key`, for the lookup) are stored; the key itself is shown
    once, when it is created. A user may hold several, each with its own expiry."""

    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.token_key}…)"
