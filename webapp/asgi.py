"""ASGI entry point: Django over HTTP, job event websockets over Channels.

uvicorn serves it (`runstack`, tests/stack.py): it hands request bodies to the app as they
arrive, so `RequestBodyLimit` refuses an oversized body on the stream, before Django buffers it;
websocket handshakes must come from the page's own origin (`SameOriginValidator`); the load
balancer's probes are answered before Django (`HealthProbes`, webapp/monitoring/health.py)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
# This process is the web server: with PostgreSQL its connections come from a pool (settings._database).
# The mark is only read while the settings load, and is taken away again below, so nothing this
# process starts (or a test process that imports this module) inherits it.
_MARKED = "TRAINYARD_WEB_PROCESS" not in os.environ
os.environ.setdefault("TRAINYARD_WEB_PROCESS", "1")

from webapp.datadirs import restrict_umask  # noqa: E402

restrict_umask()  # what the web server writes (uploads, the database) is the account's alone

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()
if _MARKED:
    del os.environ["TRAINYARD_WEB_PROCESS"]

from channels.auth import AuthMiddleware  # noqa: E402
from channels.db import database_sync_to_async  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import CookieMiddleware, SessionMiddleware  # noqa: E402

from django.conf import settings  # noqa: E402

from webapp.jobs.routing import websocket_urlpatterns  # noqa: E402
from webapp.limits import RequestBodyLimit  # noqa: E402
from webapp.monitoring.health import HealthProbes  # noqa: E402
from webapp.websocket_origin import SameOriginValidator  # noqa: E402


class SocketAuthMiddleware(AuthMiddleware):
    """Channels' AuthMiddleware, but the session and user lookup of a websocket handshake runs in
    a thread pool of its own instead of the single thread where Django runs synchronous views:
    under a burst of page loads, handshakes still finish before the server's handshake timeout."""

    async def resolve_scope(self, scope):
        from webapp.accounts.socket_tokens import user_for_scope  # session user, or the API token's

        scope["user"]._wrapped = await database_sync_to_async(user_for_scope, thread_sensitive=False)(scope)


application = ProtocolTypeRouter(
    {
        # /healthz and /readyz first: no sign-in, host or https rule applies to a probe.
        "http": HealthProbes(RequestBodyLimit(django_asgi_app, limit=lambda: settings.MAX_REQUEST_BYTES)),
        "websocket": SameOriginValidator(
            CookieMiddleware(SessionMiddleware(SocketAuthMiddleware(URLRouter(websocket_urlpatterns))))),
    }
)
