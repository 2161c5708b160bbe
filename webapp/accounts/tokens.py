"""API tokens: created on the profile page and shown once, stored as a digest (django-rest-knox).

The verbs (`create_token`, `revoke_token`) are the one place that changes a user's tokens; a
password change revokes them all, as it ends the user's other sessions and sockets.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework import exceptions

from webapp.accounts import audit
from webapp.accounts.models import ApiToken

# What the profile form offers; None: no expiry.
EXPIRY_CHOICES = {"30": timedelta(days=30), "90": timedelta(days=90), "365": timedelta(days=365), "never": None}
DEFAULT_EXPIRY = "90"
HEADER_PREFIXES = (b"token", b"bearer")


class TokenAuthentication(KnoxTokenAuthentication):
    """knox's check of the digest, accepting `Authorization: Token <key>` and `Bearer <key>`
    (what most HTTP clients and OpenAPI tools send)."""

    def authenticate(self, request):
        parts = request.META.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace").split()
        if not parts or parts[0].lower() not in HEADER_PREFIXES:
            return None  # not ours: the session (or nobody) then
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: use 'Authorization: Token <key>'.")
        return self.authenticate_credentials(parts[1])


def create_token(user, name: str, expiry: str = DEFAULT_EXPIRY) -> tuple[ApiToken, str]:
    """A new token for `user`; returns the row and the key (which is not stored anywhere)."""
    name = (name or "").strip()
    if not name:
        raise ValidationError("Give the token a name (e.g. the machine or script that uses it).")
    if len(name) > ApiToken._meta.get_field("name").max_length:
        raise ValidationError("The name is too long (at most 100 characters).")
    if expiry not in EXPIRY_CHOICES:
        raise ValidationError(f"Unknown expiry {expiry!r}: choose one of {', '.join(EXPIRY_CHOICES)}.")
    with transaction.atomic():
        # The user row is the lock: two parallel creates cannot both pass the limit.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        if ApiToken.objects.filter(user=user).count() >= settings.TRAINYARD_MAX_TOKENS_PER_USER:
            raise ValidationError(f"You already have {settings.TRAINYARD_MAX_TOKENS_PER_USER} tokens, the limit: "
                                  "revoke one you no longer use first.")
        token, key = ApiToken.objects.create(user=user, expiry=EXPIRY_CHOICES[expiry], name=name)
    audit.record(user, "token.create", name=name, expiry=expiry)
    return token, key


def revoke_token(user, token_key: str) -> bool:
    """Delete one of the user's own tokens; False when it has none with that id."""
    deleted, _ = ApiToken.objects.filter(user=user, token_key=token_key).delete()
    if deleted:
        audit.record(user, "token.revoke", token=token_key)
    return bool(deleted)


@receiver(pre_save, sender=get_user_model())
def _note_password_change(sender, instance, update_fields=None, **kwargs):
    instance._password_changed = False
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return
    old = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    instance._password_changed = old is not None and old != instance.password


@receiver(post_save, sender=get_user_model())
def _revoke_tokens_on_password_change(sender, instance, created=False, **kwargs):
    """Whoever changed the password (the user, an admin, `changepassword`) meant to lock out
    whoever knew the old one; a token made with it would outlive that otherwise."""
    if getattr(instance, "_password_changed", False):
        ApiToken.objects.filter(user=instance).delete()
        instance._password_changed = False


class TokenScheme(OpenApiAuthenticationExtension):
    """The API schema's description of the token header (drf-spectacular)."""

    target_class = "webapp.accounts.tokens.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "`Authorization: Bearer <key>` (or `Token <key>`), a key from the profile page"}
