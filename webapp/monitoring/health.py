"""`/healthz` (liveness) and `/readyz` (readiness) for load balancers and orchestrators.

Answered at the ASGI layer (`HealthProbes`, webapp/asgi.py), before Django sees the request, so a
probe is never redirected to the sign-in page or to https (`SECURE_SSL_REDIRECT`), never refused
for a Host header that is not in `ALLOWED_HOSTS` (probes often use the node's address) and never
rate limited. Both are cheap and unauthenticated and say nothing an outsider could use: no
versions, names, addresses or errors (a failed check's cause goes to the log).

- `/healthz`: 200 while the process answers, from the event loop itself (which it thereby proves
  turns); touches nothing else.
- `/readyz`: 200 when the database answers, Redis answers (broker, live events, shared
  counters) and at least one worker has heartbeated within `TRAINYARD_JOB_LEASE_SECONDS`; else
  503 naming the checks that failed. `TRAINYARD_READYZ_REQUIRE_WORKER=0` leaves the worker check
  out, for a load balancer that should keep serving pages while every worker is down. The checks
  run in a thread pool of their own, not in the one thread where Django runs synchronous views:
  a slow database or Redis does not hold up page requests while a probe waits for it.

Not a Django middleware: Django adapts a chain that starts with an async middleware for its
synchronous test client and WSGI by starting an event loop per request, which made every
request of the test suite several times slower.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now

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


def _ready_answer() -> tuple[int, dict]:
    ok, results = readiness()
    if ok:
        return 200, {"status": "ok", "checks": results}
    failed = ", ".join(name for name, v in results.items() if v != "ok")
    return 503, {"status": "unavailable", "failed": failed, "checks": results}


class HealthProbes:
    """ASGI middleware in front of the HTTP application (see the module doc)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        probe = _probe(scope)
        if probe is None:
            return await self.app(scope, receive, send)
        if probe == "live":
            status, body = 200, {"status": "ok"}
        else:
            status, body = await database_sync_to_async(_ready_answer, thread_sensitive=False)()
        payload = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
            (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else payload})


def _probe(scope) -> str | None:
    if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
        return None
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    if path in LIVENESS:
        return "live"
    if path in READINESS:
        return "ready"
    return None
