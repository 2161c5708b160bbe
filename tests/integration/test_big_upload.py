"""A large file through the real web server in chunks: the server's memory stays bounded."""

from __future__ import annotations

import threading

import psutil
import pytest

pytestmark = pytest.mark.stack

SIZE = 192 * 1024 * 1024


def test_chunked_upload_keeps_web_server_memory_bounded(stack):
    api = stack.api("alice")
    web = psutil.Process(stack.procs["web"].pid)
    before = web.memory_info().rss
    peak = [before]
    done = threading.Event()

    def watch():
        while not done.wait(0.05):
            peak[0] = max(peak[0], web.memory_info().rss)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        session = api.post(stack.url("/api/uploads/"), json={"filename": "big.zip", "size": SIZE}).json()
        chunk = session["chunk_bytes"]
        block = bytes(range(256)) * (chunk // 256)
        offset = 0
        while offset < SIZE:
            n = min(chunk, SIZE - offset)
            r = api.put(stack.url(f"/api/uploads/{session['id']}/"), data=block[:n],
                        headers={"Content-Range": f"bytes {offset}-{offset + n - 1}/{SIZE}",
                                 "Content-Type": "application/octet-stream"})
            assert r.status_code == 200, r.text
            offset = r.json()["received"]
    finally:
        done.set()
        watcher.join()
    part = stack.data_dir / "uploads" / "sessions" / f"{session['id']}.part"
    assert part.stat().st_size == SIZE
    growth = (peak[0] - before) / 2**20
    print(f"web server RSS before {before / 2**20:.0f} MiB, peak growth {growth:.0f} MiB for a {SIZE // 2**20} MiB upload")
    assert growth < 64  # a few chunks at most, never the file
    assert api.delete(stack.url(f"/api/uploads/{session['id']}/")).status_code == 204
    assert not part.exists()
