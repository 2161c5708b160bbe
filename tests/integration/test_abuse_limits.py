"""Issue 15 on the real stack: an anonymous 200 MB POST is refused on the stream (413) without
the web server buffering it, while a signed-in user keeps being served."""

from __future__ import annotations

import socket
import threading

import psutil
import pytest

from tests.integration.helpers import login
from tests.stack import PASSWORD

pytestmark = [pytest.mark.stack, pytest.mark.postgres]

SIZE = 200 * 1024 * 1024


def post_big_body(stack, path: str, size: int, *, chunked: bool = False) -> bytes:
    """Stream `size` bytes of a multipart body and return the start of the answer, read while
    the body is still being sent (as curl does; requests would send everything first)."""
    host, port = "127.0.0.1", stack.http_port
    sock = socket.create_connection((host, port), timeout=30)
    boundary = "x" * 20
    length = b"Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {size}\r\n".encode()
    sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + length +
                 f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode())

    def send():
        block = b"\0" * (1 << 20)
        try:
            for _ in range(size // len(block)):
                sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block)
        except OSError:
            pass  # the server stopped reading: what we want

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sock.close()
        sender.join(10)
    return answer


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_anonymous_200mb_post_is_refused_on_the_stream(stack, chunked):
    web = psutil.Process(stack.procs["web"].pid)
    before = web.memory_info().rss
    peak = [before]
    alice = login(stack, "alice", PASSWORD)
    statuses: list[int] = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], web.memory_info().rss)
            statuses.append(alice.get(stack.url("/api/jobs/"), timeout=30).status_code)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        answer = post_big_body(stack, "/accounts/login/", SIZE, chunked=chunked)
    finally:
        done.set()
        watcher.join(60)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert statuses and set(statuses) == {200}  # the signed-in user was served meanwhile
    growth = (peak[0] - before) / 2**20
    assert growth < 50, f"the web server grew by {growth:.0f} MiB"
    assert alice.get(stack.url("/api/jobs/")).status_code == 200
