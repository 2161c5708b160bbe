"""webapp/limits.py on its own (ASGI messages, no server): 413 from Content-Length before reading,
413 while a chunked body streams past the limit, small bodies untouched."""

from __future__ import annotations

import asyncio

from webapp.limits import RequestBodyLimit


def run(headers, chunks, limit=100):
    seen = {"bodies": 0}

    async def app(scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            seen["bodies"] += len(message["body"])
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    read = {"n": 0}

    async def receive():
        read["n"] += 1
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    asyncio.run(RequestBodyLimit(app, limit=lambda: limit)(scope, receive, send))
    return sent, seen["bodies"], read["n"]


def test_declared_length_over_the_limit_is_refused_before_the_app_reads():
    sent, app_bytes, _ = run([(b"content-length", b"1000"), (b"expect", b"100-continue")], [b"x" * 1000])
    assert sent[0]["status"] == 413 and app_bytes == 0
    assert b"chunked upload" in sent[1]["body"]


def test_chunked_body_is_cut_off_once_past_the_limit():
    sent, app_bytes, _ = run([], [b"x" * 60, b"x" * 60, b"x" * 60])
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [413]
    assert app_bytes <= 60  # the app never got the chunk that crossed the limit


def test_small_body_reaches_the_app():
    sent, app_bytes, _ = run([(b"content-length", b"50")], [b"x" * 50])
    assert sent[0]["status"] == 200 and app_bytes == 50
