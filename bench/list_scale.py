"""The jobs list at scale: 10,000 jobs, 200 concurrent viewers, on the real web server and database.

    .venv/bin/python bench/list_scale.py [--jobs 10000] [--viewers 200] [--rounds 2]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/list_scale.py

Starts redis-server and uvicorn (the stack of tests/stack.py, no training worker: nothing here
trains), creates `--viewers` users and `--jobs` jobs spread over them (finished jobs with final
metrics, a few queued and running ones with a summary, two tags each), then measures:

- "own": every viewer, signed in as itself, asks at once for its jobs list page (`/jobs/`), its
  live-refresh JSON (`/jobs/?format=json`) and the API (`/api/jobs/`), `--rounds` times;
- "all": the same number of concurrent clients signed in as one staff user, who sees all the jobs:
  the list page, a search (`learning_rate<0.01 accuracy>0.9`), a sort by a metric, a deep page and
  the API: the same query over every row.

Each request's latency is printed as p50 / p95 / max per endpoint, first for one client alone
(no queueing), then under the concurrent load, with the throughput. Every response is checked
(status 200, the row count a page must have); the script exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import requests  # noqa: E402

from tests.stack import Stack  # noqa: E402

SEED_SCRIPT = """
import json, random
from importlib import import_module
from datetime import timedelta
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.utils import timezone
from webapp.accounts.tokens import create_token
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job, JobTag

N_USERS, N_JOBS = %d, %d
rnd = random.Random(0)
SessionStore = import_module(settings.SESSION_ENGINE).SessionStore

def session(u):
    s = SessionStore()
    s[SESSION_KEY] = str(u.pk)
    s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    s[HASH_SESSION_KEY] = u.get_session_auth_hash()
    s.create()
    return s.session_key

# Unusable passwords: 200 Argon2 hashes would be the slowest part of the setup, and nobody signs in.
User.objects.bulk_create([User(username=f"viewer{i:03d}", password="!") for i in range(N_USERS)]
                         + [User(username="support", password="!", is_staff=True)])
users = list(User.objects.filter(username__startswith="viewer").order_by("username"))
staff = User.objects.get(username="support")
datasets = Dataset.objects.bulk_create([Dataset(owner=u, name=f"table-{u.username}", original_filename="t.csv",
    size_bytes=100, status="ready", info={"kind": "tabular", "task": "classification", "classes": ["a", "b"]})
    for u in users])
now = timezone.now()
jobs = []
for i in range(N_JOBS):
    u = i %% N_USERS
    status = "running" if i %% 97 == 0 else "queued" if i %% 89 == 0 else "succeeded"
    acc = round(rnd.uniform(0.5, 0.99), 4)
    lr = rnd.choice([1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2])
    summary = {"last": {"accuracy": acc, "loss": round(1 - acc, 4)}, "best": {"accuracy": acc, "loss": round(1 - acc, 4)}}
    jobs.append(Job(owner=users[u], dataset=datasets[u], name=f"run-{i:05d}", architecture=rnd.choice(["mlp", "cnn"]),
                    status=status, model_config={"hidden_sizes": [64]},
                    train_config={"epochs": 10, "learning_rate": lr, "seed": i %% 5, "optimizer": "adamw"},
                    metrics=summary["last"] if status == "succeeded" else {}, summary=summary,
                    started_at=now - timedelta(minutes=30), finished_at=now if status == "succeeded" else None,
                    total_steps=100, step=100 if status == "succeeded" else 40, epoch=4))
Job.objects.bulk_create(jobs, batch_size=1000)
ids = list(Job.objects.values_list("pk", flat=True))
JobTag.objects.bulk_create([JobTag(job_id=pk, name=t) for n, pk in enumerate(ids)
                            for t in (("baseline" if n %% 2 else "sweep"), f"group-{n %% 10}")], batch_size=2000)
out = {"users": {u.username: {"session": session(u), "token": create_token(u, "bench", "never")[1]} for u in users},
       "staff": {"session": session(staff), "token": create_token(staff, "bench", "never")[1]}}
print("SEED=" + json.dumps(out))
"""


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class Timings:
    def __init__(self) -> None:
        self.by_name: dict[str, list[float]] = {}
        self.failures: list[str] = []
        self.lock = threading.Lock()

    def add(self, name: str, seconds: float, problem: str = "") -> None:
        with self.lock:
            self.by_name.setdefault(name, []).append(seconds)
            if problem:
                self.failures.append(f"{name}: {problem}")

    def report(self, title: str, wall: float) -> None:
        total = sum(len(v) for v in self.by_name.values())
        print(f"\n{title}: {total} requests in {wall:.1f} s ({total / wall:.1f} req/s)")
        print(f"  {'endpoint':<34} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for name, values in self.by_name.items():
            print(f"  {name:<34} {len(values):>5} {pct(values, 50) * 1000:>8.0f} {pct(values, 95) * 1000:>8.0f} "
                  f"{max(values) * 1000:>8.0f}")


def get(session: requests.Session, url: str, name: str, timings: Timings, check) -> None:
    start = time.perf_counter()
    try:
        r = session.get(url, timeout=300)
        problem = "" if r.status_code == 200 else f"HTTP {r.status_code}: {r.text[:200]}"
        if not problem:
            problem = check(r)
    except requests.RequestException as exc:
        problem = f"{type(exc).__name__}: {exc}"
    timings.add(name, time.perf_counter() - start, problem)


def rows(expected):
    def check(r):
        body = r.json()
        n = len(body["jobs"])
        return "" if expected(n, body) else f"unexpected rows: {n} of {body.get('total')}"
    return check


def html_ok(r):
    return "" if 'id="jobs-table"' in r.text else "not the jobs list"


def own_requests(base: str, per_user: int) -> list[tuple[str, str, object]]:
    want = min(per_user, 50)
    return [
        ("own: GET /jobs/", base + "/jobs/", html_ok),
        ("own: GET /jobs/?format=json", base + "/jobs/?format=json", rows(lambda n, b: n == want)),
        ("own: GET /api/jobs/", base + "/api/jobs/?per_page=50", rows(lambda n, b: n == want)),
    ]


def staff_requests(base: str, jobs: int) -> list[tuple[str, str, object]]:
    deep = max(1, jobs // 50 * 3 // 4)  # page 150 of 200 with 10,000 jobs
    q = requests.utils.quote("learning_rate<0.01 accuracy>0.9")
    return [
        ("all: GET /jobs/", base + "/jobs/", html_ok),
        ("all: search lr<0.01 acc>0.9", base + f"/jobs/?format=json&q={q}", rows(lambda n, b: 0 < n <= 50)),
        ("all: sort -accuracy", base + "/jobs/?format=json&sort=-accuracy", rows(lambda n, b: n == 50)),
        (f"all: page {deep} by name", base + f"/jobs/?format=json&sort=name&page={deep}",
         rows(lambda n, b: b["page"] == deep and n == 50)),
        ("all: GET /api/jobs/?q=tag:", base + "/api/jobs/?q=tag:baseline&per_page=100", rows(lambda n, b: n == 100)),
    ]


def session_for(creds: dict, api: bool) -> requests.Session:
    s = requests.Session()
    if api:
        s.headers["Authorization"] = f"Token {creds['token']}"
    else:
        s.cookies.set("sessionid", creds["session"])
    return s


def run_load(clients: list[tuple[requests.Session, requests.Session]], plan, rounds: int, title: str) -> Timings:
    timings = Timings()
    barrier = threading.Barrier(len(clients))

    def client(i):
        page, api = clients[i]
        barrier.wait()  # every client starts at once
        for _ in range(rounds):
            for name, url, check in plan:
                get(api if "/api/" in url else page, url, name, timings, check)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        list(pool.map(client, range(len(clients))))
    timings.report(title, time.perf_counter() - start)
    return timings


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--viewers", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    stack = Stack()
    try:
        stack.data_dir.mkdir(parents=True)
        stack.start_redis()
        stack.manage("migrate", "--noinput")
        t = time.perf_counter()
        out = stack.manage("shell", "-c", SEED_SCRIPT % (args.viewers, args.jobs)).stdout
        seed = json.loads(out.split("SEED=", 1)[1].strip().splitlines()[0])
        print(f"seeded {args.jobs} jobs over {args.viewers} users in {time.perf_counter() - t:.0f} s "
              f"({stack.database_url.split(':', 1)[0]})")
        stack.start_web()
        base = stack.base_url
        users = list(seed["users"].values())
        per_user = args.jobs // args.viewers
        own, alone = own_requests(base, per_user), staff_requests(base, args.jobs)
        # One client alone first: the latency without queueing behind other requests.
        failures = []
        for title, creds, plan in (("own, 1 client", [users[0]], own), ("all, 1 client", [seed["staff"]], alone)):
            clients = [(session_for(c, False), session_for(c, True)) for c in creds]
            run_load(clients, plan, 1, title)  # warm-up: connections, caches
            failures += run_load(clients, plan, 3, title).failures
        clients = [(session_for(c, False), session_for(c, True)) for c in users]
        failures += run_load(clients, own, args.rounds, f"own, {len(clients)} concurrent users").failures
        staff = [(session_for(seed["staff"], False), session_for(seed["staff"], True)) for _ in users]
        failures += run_load(staff, alone, args.rounds, f"all, {len(staff)} concurrent staff clients").failures
        if failures:
            print(f"\n{len(failures)} failed requests, e.g.:\n  " + "\n  ".join(f[:200] for f in failures[:5]))
            log = (stack.tmp / "web.log").read_text(errors="replace").splitlines()
            causes = sorted({line for line in log if "Error" in line or "error" in line})
            print("the web server's errors:\n  " + "\n  ".join(causes[-15:]))
            return 1
        print("\nevery response checked: status 200 and the expected rows")
        return 0
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.close()


if __name__ == "__main__":
    raise SystemExit(main())
