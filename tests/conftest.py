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


@pytest.fixture(autouse=True, scope="session")
def _flush_cascades_on_postgresql():
    """Transactional tests end with a flush (TRUNCATE of every model's table). On PostgreSQL that
    fails while a table outside the models references one of them: knox's first migration creates
    `knox_authtoken` (FK to auth_user) although KNOX_TOKEN_MODEL swaps the model for
    accounts.ApiToken, so no model names that table. Truncate with CASCADE in the tests."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        return original(self, style, tables, reset_sequences=reset_sequences, allow_cascade=True)

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = original
