"""The web server's command line, one definition for `runstack`, the test stack and the benches.

uvicorn serves `webapp.asgi:application` (HTTP and, through Channels, the websockets). It passes
request bodies to the app as they arrive (so `webapp.limits` refuses an oversized one on the
stream) and has limits of its own, set here:

- `--http h11`: h11 caps the bytes it buffers for one unfinished event (a request line plus
  headers) at `--h11-max-incomplete-event-size`; the httptools parser has no such cap.
- `--ws-max-size`: the largest websocket message a client may send; ours send `{"after": n}`.
- `--limit-concurrency`: connections (websockets included) and tasks at once, then 503.
- `--no-proxy-headers`: the client address and scheme stay what the socket says; Django decides
  what a proxy's headers mean (`TRAINYARD_PROXY_COUNT`, `BEHIND_TLS_PROXY`), in one place.
- `--lifespan off`: Channels' router speaks only http and websocket.
- `--log-config` with `TRAINYARD_LOG_FORMAT=json`: uvicorn's own lines (start-up, errors) in the
  same JSON as the application's (webapp/monitoring/logs.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

# The module, not django.conf.settings: the test stack and the benches build this command line in
# processes that may not have configured Django; the values come from the same environment.
from webapp import settings

JSON_LOG_CONFIG = Path(__file__).resolve().parent / "monitoring" / "uvicorn_json_logging.json"


def server_argv(host: str, port: int, *, python: str | None = None) -> list[str]:
    return [
        python or sys.executable, "-m", "uvicorn", "webapp.asgi:application",
        "--host", host, "--port", str(port),
        "--http", "h11", "--h11-max-incomplete-event-size", str(settings.TRAINYARD_MAX_HEADER_BYTES),
        "--ws", "websockets", "--ws-max-size", str(settings.TRAINYARD_WS_MAX_MESSAGE_BYTES),
        "--limit-concurrency", str(settings.TRAINYARD_WEB_MAX_CONNECTIONS),
        "--timeout-keep-alive", "5", "--timeout-graceful-shutdown", "10",
        "--no-proxy-headers", "--lifespan", "off", "--no-access-log",
        *(["--log-config", str(JSON_LOG_CONFIG)] if settings.TRAINYARD_LOG_FORMAT == "json" else []),
    ]

