"""Sign-in lock-out rules for django-axes (settings AXES_*).

- **Per (user name, address) pair**: wrong passwords for one account from one address lock that
  pair only; the same account from elsewhere, and other accounts from the same address (every
  user behind one proxy or NAT), keep signing in. Behind a reverse proxy, set
  TRAINYARD_PROXY_COUNT so the address is the client's, not the proxy's.
- **User names are normalised** (surrounding spaces, case) before counting, so "VICTIM" and
  " victim" count against "victim".
- **Progressive**: each further lock-out of the same pair within a day doubles the wait
  (15 min, 30 min, 1 h, ... at most 24 h), counted from axes' failure log.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

MAX_COOLOFF = timedelta(hours=24)


def normalised_username(request, credentials=None) -> str:
    """The user name axes counts failures under: stripped and case-folded."""
    field = getattr(settings, "AXES_USERNAME_FORM_FIELD", "username")
    raw = (credentials or {}).get(field) if credentials else None
    if raw is None and request is not None:
        raw = getattr(request, "POST", {}).get(field)
    return (raw or "").strip().casefold()


def cool_off(request=None) -> timedelta:
    """TRAINYARD_LOGIN_COOLOFF_MINUTES, doubled for each earlier lock-out of this pair today."""
    base = timedelta(minutes=settings.TRAINYARD_LOGIN_COOLOFF_MINUTES)
    if request is None:
        return base
    from axes.models import AccessFailureLog

    username = normalised_username(request)
    address = getattr(request, "axes_ip_address", None)
    if not username or not address:
        return base
    failures = AccessFailureLog.objects.filter(
        username=username, ip_address=address, attempt_time__gte=timezone.now() - MAX_COOLOFF).count()
    earlier_lockouts = max(0, failures // max(1, settings.AXES_FAILURE_LIMIT) - 1)
    return min(MAX_COOLOFF, base * (2 ** min(earlier_lockouts, 10)))


def human_duration(delta: timedelta | None) -> str:
    """'15 minutes', '1 hour', '1 hour 30 minutes' (never an ISO 8601 'PT15M')."""
    if not delta:
        return "a few minutes"
    minutes = max(1, round(delta.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours} hour" + ("" if hours == 1 else "s"))
    if minutes:
        parts.append(f"{minutes} minute" + ("" if minutes == 1 else "s"))
    return " ".join(parts)


def lockout_response(request, response=None, credentials=None):
    """The lock-out page, with the wait in words (axes' AXES_LOCKOUT_CALLABLE)."""
    from django.shortcuts import render

    wait = cool_off(request)
    return render(request, "registration/locked.html", {"cooloff_human": human_duration(wait)}, status=429)
