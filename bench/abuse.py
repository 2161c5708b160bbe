"""Replays issue 15's attacks against a real stack on loopback and prints what a well-behaved user
saw meanwhile (signed-in `GET /api/jobs/` latency p50/p95) and the web server's RSS growth.

    .venv/bin/python bench/abuse.py [--only 1,3,4,5,11]

Bounded: every attack has a fixed size and every request a timeout; the stack (redis-server, one
Celery worker on train,ingest,infer, uvicorn) is started by tests/stack.py on free loopback ports
and removed afterwards. Each case prints one JSON line with accepted/refused counts as the code
answers them today (it asserts nothing: the fixes land in parallel, the lead reruns it).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import http.server
import io
import json
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.helpers import login  # noqa: E402
from tests.integration.test_abuse_limits import post_big_body  # noqa: E402
from tests.stack import PASSWORD, running_stack, write_separable_csv  # noqa: E402


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


class Observer:
    """A signed-in user doing GET /api/jobs/ in a loop, and the web server's peak RSS."""

    def __init__(self, stack, session):
        self.stack, self.session = stack, session
        self.web = psutil.Process(stack.procs["web"].pid)

    def __enter__(self):
        self.before = self.web.memory_info().rss
        self.peak = self.before
        self.latencies: list[float] = []
        self.errors = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self):
        while not self.done.is_set():
            self.peak = max(self.peak, self.web.memory_info().rss)
            t = time.perf_counter()
            try:
                ok = self.session.get(self.stack.url("/api/jobs/"), timeout=60).status_code == 200
            except Exception:  # noqa: BLE001 - counted
                ok = False
            self.latencies.append(time.perf_counter() - t)
            self.errors += not ok
            time.sleep(0.05)

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(70)

    def report(self) -> dict:
        ms = [x * 1000 for x in self.latencies]
        return {"user_get_p50_ms": round(statistics.median(ms), 1) if ms else None,
                "user_get_p95_ms": round(pct(ms, 0.95), 1) if ms else None, "user_get_errors": self.errors,
                "rss_growth_mib": round((self.peak - self.before) / 2**20, 1)}


def emit(case: str, observer: Observer, **figures):
    print(json.dumps({"case": case, **figures, **observer.report()}), flush=True)


def csrf_headers(stack, session):
    return {"X-CSRFToken": session.cookies["csrftoken"], "Referer": stack.url("/")}


def case_1(stack, watcher_session, ctx):
    with Observer(stack, watcher_session) as obs:
        t = time.perf_counter()
        answer = post_big_body(stack, "/accounts/login/", 200 * 2**20)
        took = time.perf_counter() - t
    emit("1: anonymous 200 MB multipart POST to /accounts/login/", obs,
         status=answer[:12].decode(errors="replace"), answered_s=round(took, 3))


class SlowReceiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", "20")
        self.end_headers()
        for _ in range(20):  # one byte every 3 s
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(3)

    def log_message(self, *args):
        pass


def try_latency(stack, session, job_id, n=3):
    """Seconds from a try's POST until its result row is final (polling the result)."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = session.post(stack.url(f"/jobs/{job_id}/try/predict/"), data={"features": "0.1,0.2,0.3"},
                         headers=csrf_headers(stack, session) | {"Accept": "application/json"}, timeout=60)
        if r.status_code >= 400:
            out.append(None)
            continue
        pid = r.json()["prediction"]["id"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            body = session.get(stack.url(f"/jobs/{job_id}/try/result/?id={pid}"), timeout=30).json()
            if body["prediction"].get("status") in ("done", "failed"):
                break
            time.sleep(0.1)
        out.append(time.perf_counter() - t)
    return out


def case_3(stack, watcher_session, ctx):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    alice = login(stack, "alice", PASSWORD)
    r = alice.post(stack.url("/account/notifications/"), headers=csrf_headers(stack, alice),
                   data={"webhook_url": f"http://127.0.0.1:{server.server_port}/hook",
                         "csrfmiddlewaretoken": alice.cookies["csrftoken"]}, allow_redirects=True)
    saved = f"127.0.0.1:{server.server_port}" in alice.get(stack.url("/account/profile/")).text
    api = stack.api("alice")
    with Observer(stack, watcher_session) as obs:
        if saved:  # a job end triggers the notification
            job = api.post(stack.url("/api/jobs/"), json={"dataset": ctx["dataset"], "architecture": "mlp",
                                                           "train_config": {"epochs": 1}}).json()
            stack.wait_job(api, job["id"])
            time.sleep(1)
        bob = login(stack, "bob", PASSWORD)
        tries = try_latency(stack, bob, ctx["bob_job"])
    server.shutdown()
    emit("3: slow webhook receiver (1 byte / 3 s) while another user tries a model", obs,
         webhook_accepted=saved, save_status=r.status_code,
         other_user_try_s=[round(x, 2) if x is not None else None for x in tries])


def zeros_zip(path: Path, entries=1000, size=2**20) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps({"model_type": "bert"}))
        block = b"\0" * size
        for i in range(entries):
            z.writestr(f"weights/part{i:04d}.bin", block)
    return path


def data_dir_mib(stack) -> float:
    return sum(p.stat().st_size for p in stack.data_dir.rglob("*") if p.is_file()) / 2**20


def case_4(stack, watcher_session, ctx):
    path = zeros_zip(ctx["tmp"] / "zeros.zip")
    alice = login(stack, "alice", PASSWORD)
    before = data_dir_mib(stack)
    with Observer(stack, watcher_session) as obs:
        with open(path, "rb") as f:
            r = alice.post(stack.url("/models/"), files={"file": ("zeros.zip", f, "application/zip")},
                           data={"name": "zeros", "task": "text-classification",
                                 "csrfmiddlewaretoken": alice.cookies["csrftoken"]},
                           headers={"Referer": stack.url("/models/")}, timeout=120)
        time.sleep(10)  # extraction runs in a worker task
    emit("4: model ZIP of 1,000 x 1 MiB zeros", obs, zip_mib=round(path.stat().st_size / 2**20, 2),
         status=r.status_code, data_dir_growth_mib=round(data_dir_mib(stack) - before, 1))


def case_5(stack, watcher_session, ctx):
    api = stack.api("charlie")
    r = api.post(stack.url("/api/datasets/"), files={"file": ("c.csv", ctx["csv"].read_bytes(), "text/csv")},
                 data={"name": "c"})
    ds = stack.wait_dataset(api, r.json()["id"])
    body = {"dataset": ds["id"], "architecture": "mlp", "train_config": {"epochs": 10000, "batch_size": 1}}
    with Observer(stack, watcher_session) as obs:
        with cf.ThreadPoolExecutor(30) as pool:
            codes = Counter(pool.map(lambda _: stack.api("charlie").post(stack.url("/api/jobs/"), json=body,
                                                                          timeout=60).status_code, range(30)))
    emit("5a: 30 parallel job submits, limit 20", obs, statuses=dict(codes))
    for job in api.get(stack.url("/api/jobs/")).json().get("results", []):
        api.post(stack.url(f"/api/jobs/{job['id']}/cancel/"))
    with Observer(stack, watcher_session) as obs:
        with cf.ThreadPoolExecutor(20) as pool:
            codes = Counter(pool.map(lambda _: stack.api("charlie").post(
                stack.url("/api/uploads/"), json={"filename": "f.csv", "size": 880_000}, timeout=60).status_code,
                range(20)))
    emit("5b: 20 parallel upload starts (quota as configured)", obs, statuses=dict(codes))


def case_11(stack, watcher_session, ctx):
    bob = login(stack, "bob", PASSWORD)
    headers = csrf_headers(stack, bob) | {"Accept": "application/json"}
    with Observer(stack, watcher_session) as obs:
        t = time.perf_counter()
        codes = Counter(bob.post(stack.url(f"/jobs/{ctx['bob_job']}/try/predict/"), data={"features": "0.1,0.2,0.3"},
                                 headers=headers, timeout=60).status_code for _ in range(200))
        took = time.perf_counter() - t
    emit("11: 200 tries in a row by one user", obs, statuses=dict(codes), took_s=round(took, 2))


CASES = {"1": case_1, "3": case_3, "4": case_4, "5": case_5, "11": case_11}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(CASES), help="comma-separated cases (default: all)")
    args = ap.parse_args()
    wanted = [c.strip() for c in args.only.split(",") if c.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="trainyard-abuse-"))
    # The product's default rate limits (the test stack raises them out of the suite's way).
    defaults = {f"TRAINYARD_RATE_{scope}": rate for scope, rate in
                {"SUBMIT": "60/min", "TRY": "60/min", "UPLOAD": "30/min", "SHARE": "30/min"}.items()}
    with running_stack(env=defaults) as stack:
        watcher = login(stack, "root", PASSWORD)
        ctx = {"tmp": tmp, "csv": write_separable_csv(tmp / "d.csv", n=200)}
        if {"3", "11"} & set(wanted):
            bob = stack.api("bob")
            with open(ctx["csv"], "rb") as f:
                ds = stack.wait_dataset(bob, bob.post(stack.url("/api/datasets/"), files={"file": ("d.csv", f)},
                                                      data={"name": "d"}).json()["id"])
            ctx["dataset_bob"] = ds["id"]
            job = bob.post(stack.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp",
                                                           "train_config": {"epochs": 1}}).json()
            stack.wait_job(bob, job["id"])
            ctx["bob_job"] = job["id"]
            alice = stack.api("alice")
            with open(ctx["csv"], "rb") as f:
                ctx["dataset"] = stack.wait_dataset(alice, alice.post(
                    stack.url("/api/datasets/"), files={"file": ("d.csv", f)}, data={"name": "d"}).json()["id"])["id"]
        for case in wanted:
            try:
                CASES[case](stack, watcher, ctx)
            except Exception as exc:  # noqa: BLE001 - one case's failure is reported, the others still run
                print(json.dumps({"case": case, "error": f"{type(exc).__name__}: {exc}"}), flush=True)


if __name__ == "__main__":
    main()
