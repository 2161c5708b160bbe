"""The audit log: one call per action that matters, from the service that performs it."""

from __future__ import annotations

from django.contrib.admin.models import LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver

from webapp.accounts.models import AuditEvent


def record(actor, action: str, obj=None, **details) -> None:
    AuditEvent.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=actor.get_username() if getattr(actor, "pk", None) else "",
        action=action,
        object_type=obj._meta.model_name if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        details=details,
    )


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    record(user, "login")


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        record(user, "logout")


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    record(None, "login_failed", username=str(credentials.get("username", ""))[:150])


@receiver(post_save, sender=LogEntry)
def _admin_action(sender, instance: LogEntry, created, **kwargs):
    if created:
        record(instance.user, "admin." + {1: "add", 2: "change", 3: "delete"}.get(instance.action_flag, "other"),
               object_type=instance.content_type.model if instance.content_type_id else "",
               object=instance.object_repr[:200], change=str(instance.get_change_message())[:1000])
