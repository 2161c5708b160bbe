"""Webhook delivery that cannot be turned against the server's own network, signed the
Standard Webhooks way (https://www.standardwebhooks.com/).

- **Where it may go.** A receiver must be a public internet address: every address its host
  name resolves to is checked (`is_global`, after unmapping IPv4-mapped / IPv4-compatible IPv6),
  so loopback, private, link-local (cloud metadata), shared, reserved, multicast and unspecified
  addresses are refused — at save time and again at connect time. The connection goes to the
  very address that was checked (the Host header and TLS SNI carry the name), so a DNS answer
  that changes between check and connect (rebinding) gains nothing. An admin may allow internal
  receivers by name or network: `TRAINYARD_WEBHOOK_ALLOWLIST` ("hooks.internal, 10.1.0.0/16").
- **How long it may take.** One total deadline (`TRAINYARD_WEBHOOK_TIMEOUT`, seconds) covers
  resolving, connecting, sending and reading the answer; a receiver that trickles one byte at a
  time is cut at the deadline. Notifications run on their own queue (`notify`), so a slow
  receiver never delays try-the-model or ONNX exports on `infer`.
- **What the user learns.** No network detail (no "connection refused" vs "timed out": that
  would make webhooks a port scanner); only "no answer", the HTTP status, or the refusal reason.
- **Other outbound traffic.** MLflow pushes (webapp/exports) go by the same address rules with
  an allowlist of their own (`Rules`, `MLFLOW`); their client library's connections are checked
  one by one by `guarded_connections()`.
- **Signature.** `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`
  over `id.timestamp.body`, with the owner's secret (`whsec_…`, shown once on the profile page).
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefused(ValueError):
    """The URL may not receive webhooks (its address is internal); the message says why."""


class WebhookError(Exception):
    """A delivery that may succeed if tried again (no answer, HTTP 5xx/429)."""


NO_ANSWER = "no answer from the receiver"


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 24 random bytes."""
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# --- addresses ---------------------------------------------------------------------------------

def _allowlist(setting: str = "TRAINYARD_WEBHOOK_ALLOWLIST") -> tuple[set[str], list]:
    names, networks = set(), []
    for item in (getattr(settings, setting, "") or "").split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            names.add(item.rstrip("."))
    return names, networks


def _plain(ip: Address) -> Address:
    """The IPv4 address behind an IPv4-mapped (::ffff:a.b.c.d) or -compatible IPv6 address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.packed[:12] == bytes(12) and int(ip) > 1:  # deprecated ::a.b.c.d
            return ipaddress.IPv4Address(ip.packed[12:])
    return ip


def why_internal(ip: Address) -> str | None:
    """Why this address may not receive webhooks, or None when it is a public address."""
    ip = _plain(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip.sixtofour is not None and why_internal(ip.sixtofour):
        return "a 6to4 address of an internal IPv4 address"  # 2002:7f00:1:: is 127.0.0.1 via a relay
    for attribute, what in (("is_loopback", "a loopback address"), ("is_link_local", "a link-local address"),
                            ("is_multicast", "a multicast address"), ("is_unspecified", "an unspecified address"),
                            ("is_private", "a private-network address"), ("is_reserved", "a reserved address")):
        if getattr(ip, attribute):
            return what
    return None if ip.is_global else "not a public internet address"


def resolve(host: str, port: int) -> list[Address]:
    """Every address the name resolves to (tests replace this to play DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise WebhookRefused("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookRefused("the URL's port is not a number from 1 to 65535") from None
    return host, port


@dataclass(frozen=True)
class Rules:
    """Who may be connected to: public addresses, plus what an administrator allowlisted.
    `what` names the traffic in refusals ("webhooks go to public internet receivers only")."""

    allowlist_setting: str = "TRAINYARD_WEBHOOK_ALLOWLIST"
    what: str = "webhooks go to public internet receivers only"
    internal: str = "internal receivers"


WEBHOOKS = Rules()
MLFLOW = Rules("TRAINYARD_MLFLOW_ALLOWLIST", "MLflow exports go to public tracking servers only",
               "internal tracking servers")


def vetted_address(url: str, *, must_resolve: bool = True, rules: Rules = WEBHOOKS) -> Address | None:
    """The address to connect to for this URL, after checking every address of its host.

    Raises WebhookRefused when any address is internal (and not allowlisted). With
    `must_resolve=False` (save time) a name that does not resolve now is accepted — it is
    checked again, like every name, when a delivery connects."""
    host, port = _host_port(url)
    return vetted_host(host, port, must_resolve=must_resolve, rules=rules)


def vetted_host(host: str, port: int, *, must_resolve: bool = True, rules: Rules = WEBHOOKS) -> Address | None:
    """vetted_address() for a host name (or address literal) and port."""
    host = host.rstrip(".").lower()
    names, networks = _allowlist(rules.allowlist_setting)
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError):
            if must_resolve:
                raise WebhookError(NO_ANSWER) from None
            return None
    if not addresses:
        raise WebhookError(NO_ANSWER)
    if host in names:
        return addresses[0]
    for ip in addresses:
        if any(_plain(ip) in net or ip in net for net in networks):
            continue
        reason = why_internal(ip)
        if reason:
            # The address itself is not named for a host name: that would let users read the
            # internal DNS zone ("vault.corp resolves to 10.2.3.4") through this message.
            literal = str(ip) == host.strip("[]")
            raise WebhookRefused(
                f"{host} {'is' if literal else 'resolves to'} {reason}; {rules.what} — an administrator "
                f"can allow {rules.internal} ({rules.allowlist_setting})")
    return addresses[0]


# --- other clients' connections (MLflow pushes) ------------------------------------------------

_guard_lock = threading.Lock()
_guarded: list[Rules] = []  # the rules of the pushes running in this process


@contextmanager
def guarded_connections(rules: Rules):
    """While this block runs, every new connection that urllib3 (requests, hence MLflow's
    client) opens in this process goes only to an address checked by `rules`, and to the very
    address that was checked (no DNS rebinding between check and connect); redirects and
    retries open their connections through the same check. A refused connection raises
    WebhookRefused inside the client. Process-wide rather than per thread, because a client
    library may open connections from threads of its own."""
    import urllib3.util.connection as connection

    with _guard_lock:
        if not isinstance(connection.create_connection, _GuardedConnect):
            connection.create_connection = _GuardedConnect(connection.create_connection)
        _guarded.append(rules)
    try:
        yield
    finally:
        with _guard_lock:
            _guarded.remove(rules)


class _GuardedConnect:
    def __init__(self, original):
        self.original = original

    def __call__(self, address, *args, **kwargs):
        with _guard_lock:
            rules = _guarded[-1] if _guarded else None
        if rules is None:
            return self.original(address, *args, **kwargs)
        host, port = address
        ip = vetted_host(str(host), int(port), rules=rules)
        return self.original((str(ip), port), *args, **kwargs)


# --- delivery ----------------------------------------------------------------------------------

def signature_headers(secret: str, msg_id: str, body: str, when: datetime | None = None) -> dict:
    """The Standard Webhooks headers for one message (the same id on every retry)."""
    from standardwebhooks import Webhook

    when = when or datetime.now(timezone.utc)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, when, body)}


def deliver(url: str, body: str, headers: dict, deadline: float | None = None) -> int:
    """POST `body` to the vetted address of `url` within one total deadline; the HTTP status.

    2xx: returned. 3xx and 4xx (but 429): ValueError (final: no redirect is followed).
    5xx, 429, no answer in time, any network error: WebhookError (retried by the task)."""
    import anyio
    import anyio.to_thread
    import httpx

    deadline = deadline or float(settings.TRAINYARD_WEBHOOK_TIMEOUT)
    parts = urlsplit(url)
    host, port = _host_port(url)
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    send_headers = {"Content-Type": "application/json", "User-Agent": "Trainyard-webhook/2",
                    "Host": parts.netloc.rsplit("@", 1)[-1], **headers}

    async def post() -> int:
        with anyio.fail_after(deadline):
            # Resolving counts against the deadline too: a receiver's slow DNS server must not
            # hold the worker (getaddrinfo cannot be interrupted, so its thread is abandoned).
            ip = await anyio.to_thread.run_sync(vetted_address, url, abandon_on_cancel=True)
            literal = f"[{ip}]" if ip.version == 6 else str(ip)
            target = parts._replace(netloc=f"{literal}:{port}").geturl()
            async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=deadline) as client:
                # Streamed and never read: only the status counts, and a receiver answering with
                # an endless body must not fill the worker's memory before the deadline.
                async with client.stream("POST", target, content=body.encode(), headers=send_headers,
                                         extensions=extensions) as response:
                    return response.status_code

    try:
        code = anyio.run(post)
    except (TimeoutError, httpx.HTTPError, OSError):
        raise WebhookError(NO_ANSWER) from None
    if code >= 500 or code == 429:
        raise WebhookError(f"HTTP {code}")
    if 300 <= code < 400:
        raise ValueError(f"HTTP {code}: a redirect (webhooks follow none)")
    if code >= 400:
        raise ValueError(f"HTTP {code}")
    return code
