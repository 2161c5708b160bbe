"""The websocket Origin check: scheme, host and port, not the host alone.

Browsers send cookies with a websocket handshake whatever page opened it, so the Origin header is
the only thing that tells our own page from another site's (cross-site websocket hijacking).
Channels' `AllowedHostsOriginValidator` compares the origin's host with ALLOWED_HOSTS only, so a
page on `http://127.0.0.1:9999` (another program on the same machine, or plain http next to
https) passed with the victim's cookie. Here the origin must be the page's own one, exactly as
the browser loaded it — the request's Host and scheme (https behind a TLS proxy when
SECURE_PROXY_SSL_HEADER says so), with the port — or one of CSRF_TRUSTED_ORIGINS, which the
forms already trust the same way.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def normalised(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, with the scheme's default port filled in;
    None for anything that is not an http(s) origin (`null`, garbage)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def request_scheme(scope) -> str:
    """http or https, as the browser sees it: a TLS proxy in front speaks http to us and says so
    in the header that SECURE_PROXY_SSL_HEADER names (the same rule as Django's is_secure())."""
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        header, secure_value = proxy
        name = header.removeprefix("HTTP_").lower().replace("_", "-").encode()
        value = _header(scope, name)
        if value is not None:
            return "https" if value.split(",", 1)[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") in ("https", "wss") else "http"


def own_origin(scope) -> tuple[str, str, int] | None:
    """The origin of the page that may open this socket: the Host the browser asked for (it must
    be one of ALLOWED_HOSTS) with the request's scheme."""
    host = None
    if getattr(settings, "USE_X_FORWARDED_HOST", False):
        host = _header(scope, b"x-forwarded-host")
    host = host or _header(scope, b"host")
    if not host:
        return None
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS or (["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    if not domain or not validate_host(domain, allowed):
        return None
    return normalised(f"{request_scheme(scope)}://{host}")


def trusted(origin: tuple[str, str, int]) -> bool:
    """One of CSRF_TRUSTED_ORIGINS (`https://*.example.com` matches its subdomains, as in Django)."""
    scheme, host, port = origin
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        wildcard = "://*." in entry
        want = normalised(entry.replace("://*.", "://", 1) if wildcard else entry)
        if want is None or want[0] != scheme or want[2] != port:
            continue
        if host == want[1] or (wildcard and host.endswith("." + want[1])):
            return True
    return False


def origin_allowed(scope) -> bool:
    raw = _header(scope, b"origin")
    origin = normalised(raw) if raw else None
    if origin is None:
        return False  # browsers always send one; a missing or opaque ("null") origin is refused
    return origin == own_origin(scope) or trusted(origin)


class SameOriginValidator:
    """ASGI middleware for the websocket router: handshakes from another origin are denied (403)."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
