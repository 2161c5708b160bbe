"""Lock-out per (normalised user name, address) pair, progressive, in words (webapp/accounts/lockout.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from webapp.accounts.lockout import human_duration

pytestmark = pytest.mark.django_db


def fail(client, username, n, addr="10.0.0.1"):
    codes = [client.post("/accounts/login/", {"username": username, "password": "wrong"}, REMOTE_ADDR=addr).status_code
             for _ in range(n)]
    return codes


def right(client, user, password, addr="10.0.0.1"):
    return client.post("/accounts/login/", {"username": user, "password": password}, REMOTE_ADDR=addr)


def test_spelling_variants_count_against_one_account(alice, settings):
    c = Client()
    fail(c, "ALICE", 2)
    fail(c, " alice ", 2)
    r = c.post("/accounts/login/", {"username": "Alice", "password": "wrong"}, REMOTE_ADDR="10.0.0.1")
    assert r.status_code == 429
    assert right(Client(), "alice", "pw-alice-123").status_code == 429  # the pair is locked


def test_a_locked_victim_does_not_lock_others_from_the_same_address(alice, bob, settings):
    assert 429 in fail(Client(), "alice", settings.AXES_FAILURE_LIMIT)
    r = right(Client(), "bob", "pw-bob-123")
    assert r.status_code == 302, "another user behind the same address must still sign in"
    # ... nor the victim from another address
    assert right(Client(), "alice", "pw-alice-123", addr="10.9.9.9").status_code == 302


def test_the_wait_is_said_in_words_and_grows(alice, settings):
    from axes.models import AccessAttempt

    c = Client()
    fail(c, "alice", settings.AXES_FAILURE_LIMIT - 1)
    r = c.post("/accounts/login/", {"username": "alice", "password": "wrong"}, REMOTE_ADDR="10.0.0.1")
    text = r.content.decode()
    assert r.status_code == 429 and "Try again in 15 minutes" in text and "PT15M" not in text
    AccessAttempt.objects.all().delete()  # the cool-off ran out; the failure log keeps the history
    r = fail(c, "alice", settings.AXES_FAILURE_LIMIT)
    r = c.post("/accounts/login/", {"username": "alice", "password": "wrong"}, REMOTE_ADDR="10.0.0.1")
    assert "Try again in 30 minutes" in r.content.decode()


@pytest.mark.parametrize("minutes,words", [(15, "15 minutes"), (60, "1 hour"), (90, "1 hour 30 minutes"),
                                           (1, "1 minute"), (24 * 60, "24 hours")])
def test_human_duration(minutes, words):
    assert human_duration(timedelta(minutes=minutes)) == words
