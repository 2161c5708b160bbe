"""Open websockets end with the sign-in that opened them (RELIABILITY A9).

Signing out closes that session's sockets; a password change or a deactivation closes every
socket of the user (their other sessions are no longer valid, and a reconnect is refused).
The consumers join `auth.<user id>` and close with 4401 on `auth.revoked`.
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import pre_save
from django.dispatch import receiver

from webapp.jobs.events import auth_group, group_send

log = logging.getLogger(__name__)


def revoke_sockets(user_id, session_key: str | None = None) -> None:
    """Close the user's open sockets: those of one session, or all of them (None)."""
    try:
        group_send(auth_group(user_id), {"type": "auth.revoked", "session": session_key})
    except Exception as exc:  # noqa: BLE001 - a closed session cannot reconnect anyway
        log.warning("could not close the sockets of user %s: %s", user_id, exc)


@receiver(user_logged_out)
def _signed_out(sender, request, user, **kwargs):
    if user is not None:
        key = request.session.session_key if request is not None and hasattr(request, "session") else None
        revoke_sockets(user.pk, key)


@receiver(pre_save, sender=get_user_model())
def _credentials_changed(sender, instance, update_fields=None, **kwargs):
    if instance.pk is None or (update_fields is not None and not {"password", "is_active"} & set(update_fields)):
        return  # a new user, or e.g. the last_login update at sign-in
    old = sender.objects.filter(pk=instance.pk).values("password", "is_active").first()
    if old is None:
        return
    if old["password"] != instance.password or (old["is_active"] and not instance.is_active):
        user_id = instance.pk
        transaction.on_commit(lambda: revoke_sockets(user_id))
