"""`/healthz` (liveness) and `/readyz` (readiness) for load balancers and orchestrators.

Answered by the first middleware, before any other runs, so a probe is never redirected to the
sign-in page or to https (`SECURE_SSL_REDIRECT`), never refused for a Host header that is not in
`ALLOWED_HOSTS` (probes often use the node's address), and never rate limited. Both are cheap and
unauthenticated and say nothing an outsider could use: no versions, names, addresses or errors.

- `/healthz`: 200 while the process answers; touches nothing else.
- `/readyz`: 200 when the database answers, Redis answers (broker, live events, shared
  counters) and at least one worker has heartbeated within `TRAINYARD_JOB_LEASE_SECONDS`; else
  503 naming the checks that failed. `TRAINYARD_READYZ_REQUIRE_WORKER=0` leaves the worker check
  out, for a load balancer that should keep serving pages while every worker is down.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from asgiref.sync import markcoroutinefunction
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now
from django.http import JsonResponse

log = logging.getLogger(__name__)

LIVENESS = ("/healthz", "/healthz/")
READINESS = ("/readyz", "/readyz/")
PROBE_TIMEOUT = 0.5  # seconds for Redis to connect and answer


def check_database() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone() is not None


def check_redis() -> bool:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=PROBE_TIMEOUT,
                                  socket_connect_timeout=PROBE_TIMEOUT)
    try:
        return bool(client.ping())
    finally:
        client.close()


def check_workers() -> bool:
    """A worker (of any queue) whose last heartbeat is younger than the job lease, on the database's clock."""
    from webapp.cluster.models import Worker

    since = ExpressionWrapper(Now() - timedelta(seconds=settings.TRAINYARD_JOB_LEASE_SECONDS),
                              output_field=DateTimeField())
    return Worker.objects.filter(status=Worker.Status.ONLINE, last_heartbeat__gte=since).exists()


def readiness() -> tuple[bool, dict[str, str]]:
    checks = {"database": check_database, "redis": check_redis}
    if settings.TRAINYARD_READYZ_REQUIRE_WORKER:
        checks["workers"] = check_workers
    results = {}
    for name, check in checks.items():
        if name == "workers" and results.get("database") != "ok":
            results[name] = "unknown"  # needs the database
            continue
        try:
            results[name] = "ok" if check() else "failed"
        except Exception as exc:  # noqa: BLE001 - any error is a failed check; the cause goes to the log only
            log.warning("readiness check %s failed: %s", name, exc)
            results[name] = "failed"
    return all(v == "ok" for v in results.values()), results


def _ready_response() -> JsonResponse:
    ok, results = readiness()
    if not ok:
        failed = ", ".join(name for name, v in results.items() if v != "ok")
        body = {"status": "unavailable", "failed": failed, "checks": results}
    else:
        body = {"status": "ok", "checks": results}
    return _no_store(JsonResponse(body, status=200 if ok else 503))


def _live_response() -> JsonResponse:
    return _no_store(JsonResponse({"status": "ok"}))


def _no_store(response):
    response["Cache-Control"] = "no-store"
    return response


def _probe(request) -> str | None:
    if request.method not in ("GET", "HEAD"):
        return None
    if request.path_info in LIVENESS:
        return "live"
    if request.path_info in READINESS:
        return "ready"
    return None


class HealthCheckMiddleware:
    """First in settings.MIDDLEWARE (see the module doc). Async only: under uvicorn a liveness
    probe is answered on the event loop (which it thereby proves turns), and the readiness checks
    run in a thread pool of their own, not in the one thread where Django runs synchronous views,
    so a slow database or Redis does not hold up page requests while a probe waits for it. Django
    adapts the synchronous middleware below (and the test client) to it."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        probe = _probe(request)
        if probe == "live":
            return _live_response()
        if probe == "ready":
            return await database_sync_to_async(_ready_response, thread_sensitive=False)()
        return await self.get_response(request)
