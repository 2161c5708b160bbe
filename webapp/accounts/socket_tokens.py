"""API-token sign-in for websockets: `Authorization: Token <key>` (or the scheme the API accepts)
on the handshake, for scripts and the CLI that have a token but no browser session.

The key travels in a header, never in the URL (`?token=` ends up in access logs and proxies'
histories). The same DRF authentication classes as the HTTP API check it, so a change of token
backend (knox) applies to sockets too. A handshake without the header keeps the session user;
one with a header that does not authenticate is anonymous (the consumer closes with 4401) —
never silently the session's user.
"""

from __future__ import annotations

from channels.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.settings import api_settings


def user_for_authorization(header: str):
    """The active user the API's token authentication finds for this Authorization header, else None."""
    django_request = HttpRequest()
    django_request.META["HTTP_AUTHORIZATION"] = header
    request = Request(django_request)
    for auth_class in api_settings.DEFAULT_AUTHENTICATION_CLASSES:
        if issubclass(auth_class, SessionAuthentication):
            continue  # the cookie is the other middleware's business
        try:
            result = auth_class().authenticate(request)
        except APIException:
            return None
        if result is not None:
            user = result[0]
            return user if user.is_active else None
    return None


def user_for_scope(scope):
    """The websocket handshake's user: by the Authorization header when there is one (a token
    that does not authenticate gives AnonymousUser), else the session's (channels' own lookup)."""
    header = dict(scope.get("headers") or []).get(b"authorization")
    if header is None:
        return get_user.func(scope)
    return user_for_authorization(header.decode("latin-1")) or AnonymousUser()
