"""Load test: many users queueing jobs through the API while many websocket viewers watch.

    .venv/bin/python bench/load_test.py [--users 50] [--jobs-per-user 2] [--viewers 200] [--workers 1]

Starts the real stack (redis-server, Celery worker(s), uvicorn), creates N users with API tokens
and browser sessions, shares one small table dataset with all of them, then, all at once:
- every user submits its jobs through `POST /api/jobs/` (one thread per user);
- every user's browser opens its jobs list and job page (`GET /jobs/`, `GET /jobs/<id>/`), waits
  --think seconds and does it again, while the jobs queue and run;
- V websocket viewers (spread over the users, each signed in as the job's owner) watch the users'
  first jobs the way the job page does: `{"after": 0}` to replay, then live frames, and
  `{"after": last}` whenever a frame skips numbers.

Prints jobs/s accepted, p50/p95 of the submit and page requests, then waits for every job to end
and checks: each job is in a final state, its stored events are numbered 1..last_seq with no gap
or duplicate and end with a final status, and each viewer holds exactly the job's events. Exits
non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import requests  # noqa: E402
import websockets  # noqa: E402

from tests.integration.helpers import login  # noqa: E402
from tests.stack import PASSWORD, running_stack, write_separable_csv  # noqa: E402

FINAL = ("succeeded", "failed", "cancelled")

USERS_SCRIPT = """
import json
from django.contrib.auth.models import User
from webapp.accounts.tokens import create_token
out = {}
for i in range(%d):
    u = User.objects.create_user(f"load{i:03d}", f"load{i:03d}@example.com", %r)
    out[u.username] = create_token(u, "load test", "never")[1]
print("TOKENS=" + json.dumps(out))
"""


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[q - 1]


class Viewer:
    """One job page's websocket, re-syncing by sequence number and reconnecting with back-off
    like static/js/job.js does."""

    def __init__(self, url: str, headers: dict):
        self.url, self.headers = url, headers
        self.seqs: dict[int, int] = {}  # seq -> times seen (a duplicate shows as 2)
        self.last = 0
        self.final = False
        self.error: str | None = None
        self.resyncs = 0
        self.reconnects = 0

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not (stop.is_set() or self.final):
            try:
                await self._watch(stop)
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - like the page: reconnect with back-off
                self.error = f"{type(exc).__name__}: {exc}"
                self.reconnects += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 8.0)
        if self.final:
            self.error = None

    async def _watch(self, stop: asyncio.Event) -> None:
        async with websockets.connect(self.url, additional_headers=self.headers, open_timeout=120,
                                      max_size=2**23) as ws:
            await ws.send(json.dumps({"after": self.last}))  # the replay: all, or what was missed
            while not (stop.is_set() or self.final):
                try:
                    raw = await asyncio.wait_for(ws.recv(), 1.0)
                except asyncio.TimeoutError:
                    continue
                events = json.loads(raw).get("events", [])
                if events and events[0]["seq"] > self.last + 1:
                    self.resyncs += 1  # a dropped or early frame: ask for what is missing
                    await ws.send(json.dumps({"after": self.last}))
                for ev in events:
                    if ev["seq"] <= self.last:
                        continue  # already have it (the page applies each number once)
                    if ev["seq"] != self.last + 1:
                        break  # wait for the re-sync answer
                    self.seqs[ev["seq"]] = self.seqs.get(ev["seq"], 0) + 1
                    self.last = ev["seq"]
                    if ev["kind"] == "status" and ev.get("status") in FINAL:
                        self.final = True


def stored_events(stack, api: requests.Session, job_id: str) -> tuple[list[int], dict | None]:
    """The sequence numbers of a job's stored events, page by page, and its last event."""
    seqs: list[int] = []
    after, last_event = 0, None
    while True:
        page = api.get(stack.url(f"/api/jobs/{job_id}/events/?after={after}")).json()
        evs = page["events"] if isinstance(page, dict) else page
        if not evs:
            break
        seqs += [e["seq"] for e in evs]
        after = evs[-1]["seq"]
        last_event = evs[-1]
    return seqs, last_event


def check_jobs(stack, apis: dict, jobs: dict[str, str]) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Every job in a final state, its stored events numbered 1..n and ending on a final status.
    Returns the problems, the count per final state and the number of events per job."""
    problems: list[str] = []
    statuses: dict[str, int] = {}
    last_seq: dict[str, int] = {}
    for job_id, name in jobs.items():
        j = apis[name].get(stack.url(f"/api/jobs/{job_id}/")).json()
        statuses[j["status"]] = statuses.get(j["status"], 0) + 1
        if j["status"] not in FINAL:
            problems.append(f"job {job_id} still {j['status']}")
        seqs, last_event = stored_events(stack, apis[name], job_id)
        last_seq[job_id] = len(seqs)
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"job {job_id}: stored events not numbered 1..{len(seqs)}")
        elif not seqs or last_event["kind"] != "status" or last_event.get("status") not in FINAL:
            problems.append(f"job {job_id}: last stored event is not a final status")
    return problems, statuses, last_seq


def check_viewers(viewers: list[Viewer], last_seq: dict[str, int]) -> list[str]:
    """Each viewer saw every stored event of its job exactly once."""
    problems = []
    for v in viewers:
        job_id = v.url.rstrip("/").rsplit("/", 1)[1]
        want = last_seq.get(job_id, -1)
        if v.error:
            problems.append(f"viewer of {job_id}: {v.error}")
        elif sorted(v.seqs) != list(range(1, want + 1)) or any(c != 1 for c in v.seqs.values()):
            problems.append(f"viewer of {job_id}: has {len(v.seqs)} events, job has {want}")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--jobs-per-user", type=int, default=2)
    ap.add_argument("--viewers", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1, help="Celery training workers (one job each)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--think", type=float, default=3.0, help="seconds each user waits between page loads")
    args = ap.parse_args()

    env = {"TRAINYARD_MAX_RUNNING_PER_USER": "1"}
    with tempfile.TemporaryDirectory() as tmp, running_stack(env=env) as stack:
        for i in range(1, args.workers):
            stack.start_worker(f"worker{i}", queues="train")
        out = stack.manage("shell", "-c", USERS_SCRIPT % (args.users, PASSWORD)).stdout
        tokens = json.loads(out.split("TOKENS=", 1)[1].strip().splitlines()[0])
        users = sorted(tokens)

        owner = stack.api("alice")
        with open(write_separable_csv(Path(tmp) / "d.csv", n=600), "rb") as f:
            ds = owner.post(stack.url("/api/datasets/"), files={"file": ("d.csv", f)}).json()
        stack.wait_dataset(owner, ds["id"], timeout=300)
        for name in users:
            r = owner.post(stack.url(f"/api/datasets/{ds['id']}/share/"), json={"username": name, "action": "add"})
            r.raise_for_status()

        apis = {}
        for name in users:
            s = requests.Session()
            s.headers["Authorization"] = f"Token {tokens[name]}"
            apis[name] = s
        with ThreadPoolExecutor(8) as pool:
            browsers = dict(zip(users, pool.map(lambda n: login(stack, n, PASSWORD), users)))
        print(f"{len(users)} users, {args.jobs_per_user} jobs each, {args.viewers} viewers, "
              f"{args.workers} training worker(s); dataset shared with every user")

        body = {"dataset": ds["id"], "architecture": "mlp", "model_config": {"hidden_sizes": [32]},
                "train_config": {"epochs": args.epochs, "batch_size": 32, "learning_rate": 1e-2}}
        submit_ms: list[float] = []
        page_ms: list[float] = []
        page_errors: list[str] = []
        jobs: dict[str, str] = {}  # job id -> owner
        first_job: dict[str, str] = {}
        refused: list[str] = []
        lock = threading.Lock()
        stop_pages = threading.Event()
        first_ready = threading.Event()

        def submit(name: str) -> None:
            for k in range(args.jobs_per_user):
                t = time.perf_counter()
                r = apis[name].post(stack.url("/api/jobs/"), json={**body, "name": f"{name}-{k}"})
                with lock:
                    submit_ms.append((time.perf_counter() - t) * 1000)
                    if r.status_code == 201:
                        jobs[r.json()["id"]] = name
                        first_job.setdefault(name, r.json()["id"])
                        if len(first_job) == len(users):
                            first_ready.set()
                    else:
                        refused.append(f"{name}: {r.status_code} {r.text[:200]}")

        def browse(name: str) -> None:
            s = browsers[name]
            while not stop_pages.is_set():
                job = first_job.get(name)
                for path in ["/jobs/"] + ([f"/jobs/{job}/"] if job else []):
                    t = time.perf_counter()
                    r = s.get(stack.url(path))
                    with lock:
                        page_ms.append((time.perf_counter() - t) * 1000)
                        if r.status_code != 200:
                            page_errors.append(f"{path} {r.status_code}")
                stop_pages.wait(args.think)  # a user's pause between page loads

        async def watch_all(stop: asyncio.Event) -> list[Viewer]:
            await asyncio.to_thread(first_ready.wait, 300)
            viewers = []
            for i in range(args.viewers):
                name = users[i % len(users)]
                if name not in first_job:
                    continue
                cookie = "; ".join(f"{k}={v}" for k, v in browsers[name].cookies.items())
                url = stack.base_url.replace("http://", "ws://") + f"/ws/jobs/{first_job[name]}/"
                viewers.append(Viewer(url, {"Cookie": cookie, "Origin": stack.base_url}))
            tasks = []
            for v in viewers:
                tasks.append(asyncio.create_task(v.run(stop)))
                await asyncio.sleep(0.002)
            deadline = time.monotonic() + args.timeout
            while not all(v.final for v in viewers) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*tasks)
            return viewers

        viewer_result: list[list[Viewer]] = []
        viewer_thread = threading.Thread(target=lambda: viewer_result.append(asyncio.run(watch_all(asyncio.Event()))))
        viewer_thread.start()
        page_threads = [threading.Thread(target=browse, args=(n,), daemon=True) for n in users]
        for t in page_threads:
            t.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(users)) as pool:
            list(pool.map(submit, users))
        accept_s = time.perf_counter() - t0
        print(f"accepted {len(jobs)} jobs in {accept_s:.2f} s: {len(jobs) / accept_s:.1f} jobs/s "
              f"(submit p50 {pct(submit_ms, 50):.0f} ms, p95 {pct(submit_ms, 95):.0f} ms); refused {len(refused)}")

        # Wait for every job to end, the pages still loading meanwhile.
        t1 = time.perf_counter()
        deadline = time.monotonic() + args.timeout
        pending = set(jobs)
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                j = apis[jobs[job_id]].get(stack.url(f"/api/jobs/{job_id}/")).json()
                if j["status"] in FINAL:
                    pending.discard(job_id)
            if pending:
                time.sleep(2)
        run_s = time.perf_counter() - t1
        stop_pages.set()
        viewer_thread.join()
        viewers = viewer_result[0] if viewer_result else []
        print(f"pages: {len(page_ms)} loads of /jobs/ and /jobs/<id>/ while queueing and running: "
              f"p50 {pct(page_ms, 50):.0f} ms, p95 {pct(page_ms, 95):.0f} ms, errors {len(page_errors)}")
        print(f"all jobs ended {run_s:.0f} s after the last submit ({len(jobs) / max(run_s, 1e-9) * 60:.1f} jobs/min "
              f"on {args.workers} worker(s))")

        # Checks: final states, stored events continuous, viewers complete.
        problems: list[str] = list(refused) + page_errors[:20]
        job_problems, statuses, last_seq = check_jobs(stack, apis, jobs)
        problems += job_problems + check_viewers(viewers, last_seq)
        print(f"final states: {statuses}; {sum(last_seq.values())} stored events, all numbered without gaps; "
              f"{len(viewers)} viewers, {sum(len(v.seqs) for v in viewers)} events received, "
              f"{sum(v.resyncs for v in viewers)} re-syncs after skipped numbers, "
              f"{sum(v.reconnects for v in viewers)} reconnects (refused or timed-out handshakes, as a page retries)")
        if problems:
            print(f"FAILED: {len(problems)} problem(s)")
            for p in problems[:30]:
                print("  " + p)
            sys.exit(1)
        print("OK: every job ended in a final state; no event lost or duplicated, stored or seen by a viewer")


if __name__ == "__main__":
    main()
