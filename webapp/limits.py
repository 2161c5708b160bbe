"""The request-size limit, enforced on the byte stream before anything is buffered.

Django reads a whole request body (into memory up to 1 MiB, then a temporary file) before any
view, middleware or CSRF check runs, so `TRAINYARD_MAX_REQUEST_MB` checked in Django comes after
the bytes were taken. This ASGI middleware sits in front of the Django app: a declared
`Content-Length` above the limit is answered 413 before one byte of the body is read, and a body
without one (chunked) is counted as it streams and cut off with 413 the moment it passes the
limit. The chunked upload API (`/api/uploads/`) sends files in chunks far below the limit and
keeps its own per-file limits.
"""

from __future__ import annotations

import asyncio
import json
import time

# After the 413 is out, the rest of a request body is read and dropped for a short while before
# the connection closes: closing a socket with unread bytes makes the kernel send a reset, which
# can destroy the 413 in the client's receive buffer before it reads it (the "lingering close"
# that nginx and Apache do too). Bounded both ways, so a client that keeps sending costs nothing.
LINGER_SECONDS = 1.0
LINGER_BYTES = 16 * 1024 * 1024


def declared_length(scope) -> int | None:
    """The request's Content-Length, or None when it has none (chunked) or it is not a number
    (the HTTP parser refuses those before the app runs)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def expects_continue(scope) -> bool:
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in scope.get("headers", ()))


def too_large_body(limit: int) -> bytes:
    mb = limit / 2**20
    return json.dumps({
        "detail": f"The request body is larger than {mb:g} MB, the limit for one request. "
                  "Send larger files through the chunked upload API (/api/uploads/)."
    }).encode()


class RequestBodyLimit:
    """ASGI middleware: HTTP requests whose body is larger than `limit()` bytes get 413."""

    def __init__(self, app, limit):
        self.app = app
        self.limit = limit  # a callable: the setting is read per request (tests override it)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit()
        length = declared_length(scope)
        if length is not None and length > limit:
            # The body is never read: 100-continue clients do not even send it.
            return await self.refuse(scope, receive, send, limit, linger=not expects_continue(scope))

        received = 0
        refused = False
        started = False

        async def limited_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:  # an app that already answered just loses the rest of the body
                        await self.refuse(scope, receive, send, limit, linger=True)
                    return {"type": "http.disconnect"}  # the app stops reading, as if the client left
            return message

        async def guarded_send(message):
            nonlocal started
            started = True
            if not refused:  # after the 413 the app has nothing more to say on this request
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    @staticmethod
    async def refuse(scope, receive, send, limit: int, *, linger: bool) -> None:
        body = too_large_body(limit)
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]})
        # The whole answer goes out now (Content-Length says where it ends); the response is
        # only completed, and the connection closed, after the bounded drain below.
        await send({"type": "http.response.body", "body": body, "more_body": linger})
        if linger:
            await drain(receive)
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def drain(receive) -> None:
    """Read and drop request bytes for at most LINGER_SECONDS / LINGER_BYTES."""
    deadline = time.monotonic() + LINGER_SECONDS
    dropped = 0
    while dropped < LINGER_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), left)
        except asyncio.TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        dropped += len(message.get("body", b""))
