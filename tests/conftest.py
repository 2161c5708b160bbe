from __future__ import annotations

import os
import subprocess

import pytest
from django.contrib.auth.models import User

from tests.stack import free_port, redis_binary, running_stack, wait_for

# The tests never reach the Hugging Face Hub (models are made by the tests or shipped by a package);
# the stack's processes inherit this too.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Throttle counters live in the cache: each test starts with none (ids are reused)."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server of the test's own (the embedded binary when none is installed)."""
    port = free_port()
    proc = subprocess.Popen([redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    import redis

    try:
        wait_for(lambda: redis.Redis(port=port).ping(), 20, "redis-server")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", "alice@example.com", "pw-alice-123")


@pytest.fixture
def bob(db):
    return User.objects.create_user("bob", "bob@example.com", "pw-bob-123")


@pytest.fixture
def charlie(db):
    return User.objects.create_user("charlie", "charlie@example.com", "pw-charlie-123")


@pytest.fixture
def staff(db):
    return User.objects.create_user("root", "root@example.com", "pw-root-123", is_staff=True, is_superuser=True)


class SentTasks(list):
    """(task name, *args) per send; .queues: the queue each went to (None: the task's route)."""

    def __init__(self):
        super().__init__()
        self.queues: list[str | None] = []


@pytest.fixture
def sent_tasks(monkeypatch):
    """Unit tests of the web tier record the Celery tasks they would send (the real broker
    is exercised by the integration tests)."""
    sent = SentTasks()

    def send(name, *args, queue=None):
        sent.append((name, *args))
        sent.queues.append(queue)

    monkeypatch.setattr("webapp.celery.send", send)
    return sent


@pytest.fixture(scope="session")
def stack():
    with running_stack() as s:
        yield s
