"""Rate limits per user and action: DRF's scoped throttles on the shared cache (Redis in a
deployment, so every web process counts together), for the API and for the pages that post the
same actions. A refusal is 429 with `Retry-After`.

Only state-changing requests are counted (listing jobs is not "submitting"), and a cache that
cannot be reached lets requests through (logged): a Redis outage must not lock everyone out
of the product on top of stopping the queue.

Rates: settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], each overridable by
TRAINYARD_RATE_<SCOPE> (e.g. TRAINYARD_RATE_TRY=120/min).
"""

from __future__ import annotations

import functools
import logging
import math

from django.http import JsonResponse
from rest_framework.throttling import ScopedRateThrottle

log = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ActionThrottle(ScopedRateThrottle):
    """ScopedRateThrottle for the view's `throttle_scope`, on unsafe methods only; fails open."""

    def get_rate(self):
        """Read at request time (DRF binds the class attribute at import; settings may change)."""
        from rest_framework.settings import api_settings

        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        if request.method in SAFE_METHODS:
            return True
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - the cache (Redis) is down: do not refuse everyone
            log.warning("rate limit not checked (cache unreachable): %s", exc)
            return True


class _PageView:
    """What ScopedRateThrottle reads from a view."""

    def __init__(self, scope: str):
        self.throttle_scope = scope


def throttled_page(scope: str):
    """The same limit for a plain Django view (e.g. try-the-model's POST): 429 + Retry-After."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            throttle = ActionThrottle()
            if not throttle.allow_request(request, _PageView(scope)):
                wait = max(1, math.ceil(throttle.wait() or 1))
                response = JsonResponse({"error": f"too many requests; try again in {wait} s",
                                         "retry_after": wait}, status=429)
                response["Retry-After"] = str(wait)
                return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
