"""`manage.py check --deploy`: the parts of docs/operations.md's deployment checklist that the
settings can tell (Django's own deploy checks cover DEBUG, the secret key, HSTS, cookies)."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def trainyard_deploy_checks(app_configs=None, **kwargs):
    found = []
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None) and not os.environ.get("TRAINYARD_PROXY_COUNT", "").strip():
        found.append(Warning(
            "BEHIND_TLS_PROXY is on but TRAINYARD_PROXY_COUNT is not set: every user then shares the "
            "proxy's address (login throttling, logs).", hint="Set TRAINYARD_PROXY_COUNT=1 for one proxy.",
            id="trainyard.W001"))
    if not os.environ.get("TRAINYARD_CHANNEL_PREFIX", "").strip():
        found.append(Warning(
            "TRAINYARD_CHANNEL_PREFIX is not set: the prefix is derived from the data dir and database, "
            "so moving either changes it while old processes still run.",
            hint="Set a name of your own per installation sharing a Redis (e.g. TRAINYARD_CHANNEL_PREFIX=prod).",
            id="trainyard.W002"))
    if not os.environ.get("TRAINYARD_MAX_REQUEST_MB", "").strip():
        found.append(Warning(
            "TRAINYARD_MAX_REQUEST_MB is not set (default 64 MB): choose the largest single request "
            "deliberately and set the proxy's body limit to the same value.",
            hint="e.g. TRAINYARD_MAX_REQUEST_MB=64 and nginx client_max_body_size 64m.", id="trainyard.W003"))
    if not settings.SESSION_COOKIE_SECURE and not settings.DEBUG:
        found.append(Warning("SECURE_COOKIES is off: sessions travel over plain http.",
                             hint="Serve through a TLS proxy and set SECURE_COOKIES=1.", id="trainyard.W004"))
    return found
