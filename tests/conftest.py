from __future__ import annotations

import os

import pytest
from django.contrib.auth.models import User

from tests.stack import running_stack

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
