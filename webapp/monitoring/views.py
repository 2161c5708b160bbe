"""`/metrics`: Prometheus text format, for a bearer token (TRAINYARD_METRICS_TOKEN) or a staff session.

Not behind the sign-in redirect (a scraper gets 401, not the login page) and not rate limited
(reads are never throttled); a signed-in user who is not staff gets 403.
"""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.core import GaugeMetricFamily

from webapp.monitoring import recorder
from webapp.monitoring.collector import DatabaseCollector

log = logging.getLogger(__name__)


class RecordedCollector:
    """The metrics every process records (webapp/monitoring/recorder.py), read from Redis; without
    Redis, only `trainyard_metrics_store_up 0` (the database's metrics are still served)."""

    def collect(self):
        recorder.flush()  # this process's own increments first
        up = GaugeMetricFamily("trainyard_metrics_store_up", "Whether the recorded metrics could be read from Redis")
        try:
            families = list(recorder.families())
        except Exception as exc:  # noqa: BLE001 - Redis down: say so in the metrics
            log.warning("recorded metrics unavailable: %s", exc)
            families = []
        up.add_metric([], 1 if families else 0)
        yield up
        yield from families

    def describe(self):
        return []


def registry() -> CollectorRegistry:
    # Not the default registry: its process and platform collectors describe whichever web
    # process answered, which means nothing when one target stands for the whole installation.
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DatabaseCollector())
    reg.register(RecordedCollector())
    return reg


def _bearer_ok(request) -> bool:
    expected = settings.TRAINYARD_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return (bool(expected) and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), expected.encode()))


@login_not_required
@require_safe
@never_cache
def metrics(request):
    if not _bearer_ok(request):
        user = request.user
        if not user.is_authenticated:
            response = JsonResponse({"error": "a bearer token (TRAINYARD_METRICS_TOKEN) or a staff session is needed"},
                                    status=401)
            response["WWW-Authenticate"] = 'Bearer realm="trainyard-metrics"'
            return response
        if not (user.is_active and user.is_staff):
            return JsonResponse({"error": "staff only"}, status=403)
    # The text format, or OpenMetrics when the scraper asks for it (Accept), as prometheus_client's own handler does.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(registry()), content_type=content_type)
