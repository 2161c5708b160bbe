"""Upload throughput through the real stack: the chunked Content-Range API, tus by the
trainyard client, and tus by tuspy, one after another in the same run (ratios side by side).

    .venv/bin/python bench/upload_throughput.py [--mb 64] [--chunk-mb 8] [--repeat 2]

Each way uploads the same file into an upload session (no dataset is created, so no ingest runs)
and the session is removed afterwards. Prints MB/s per way (best of --repeat) and each way's
ratio to the chunked API; the web server's peak RSS growth shows that no way holds the file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import psutil  # noqa: E402
import requests  # noqa: E402

from tests.stack import running_stack  # noqa: E402


def chunked(stack, path: Path, chunk: int) -> None:
    api = stack.api("alice")
    size = path.stat().st_size
    session = api.post(stack.url("/api/uploads/"), json={"filename": path.name, "size": size}).json()
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            data = f.read(chunk)
            r = api.put(stack.url(f"/api/uploads/{session['id']}/"), data=data, headers={
                "Content-Range": f"bytes {offset}-{offset + len(data) - 1}/{size}",
                "Content-Type": "application/octet-stream"})
            r.raise_for_status()
            offset += len(data)
    api.delete(stack.url(f"/api/uploads/{session['id']}/"))


def tus_client(stack, path: Path, chunk: int) -> None:
    from trainyard_client import Client
    from trainyard_client.config import UploadStore

    with tempfile.TemporaryDirectory() as store, Client(stack.base_url, stack.tokens["alice"],
                                                        upload_store=UploadStore(Path(store) / "u.json")) as c:
        url = c.upload_file(path, chunk_bytes=chunk)
        c.request("DELETE", url, headers={"Tus-Resumable": "1.0.0"})


def tuspy(stack, path: Path, chunk: int) -> None:
    from tusclient import client

    headers = {"Authorization": f"Token {stack.tokens['alice']}"}
    uploader = client.TusClient(stack.url("/api/uploads/tus/"), headers=headers).uploader(
        str(path), chunk_size=chunk, metadata={"filename": path.name})
    uploader.upload()
    requests.delete(uploader.url, headers={**headers, "Tus-Resumable": "1.0.0"}).raise_for_status()


WAYS = {"chunked PUT": chunked, "tus (trainyard_client)": tus_client, "tus (tuspy)": tuspy}


def web_process(stack) -> psutil.Process:
    name = "web" if "web" in stack.procs else "daphne"
    return psutil.Process(stack.procs[name].pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--chunk-mb", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_stack() as stack:
        path = Path(tmp) / "payload.bin"
        path.write_bytes(os.urandom(args.mb * 2**20))
        web = web_process(stack)
        results = {}
        for label, way in WAYS.items():
            best, growth = float("inf"), 0.0
            for _ in range(args.repeat):
                before, peak, done = web.memory_info().rss, [0], threading.Event()

                def watch(before=before, peak=peak, done=done):
                    while not done.wait(0.05):
                        peak[0] = max(peak[0], web.memory_info().rss - before)

                watcher = threading.Thread(target=watch)
                watcher.start()
                start = time.perf_counter()
                way(stack, path, args.chunk_mb * 2**20)
                best = min(best, time.perf_counter() - start)
                done.set()
                watcher.join()
                growth = max(growth, peak[0] / 2**20)
            results[label] = (args.mb / best, growth)
        base = results["chunked PUT"][0]
        print(f"{args.mb} MiB in {args.chunk_mb} MiB chunks, best of {args.repeat}:")
        for label, (rate, growth) in results.items():
            print(f"  {label:<24} {rate:7.1f} MiB/s   x{rate / base:.2f} of chunked   web RSS peak +{growth:.0f} MiB")


if __name__ == "__main__":
    main()
