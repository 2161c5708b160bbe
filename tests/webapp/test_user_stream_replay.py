"""The user stream (`ws/user/`: job status changes for the jobs list and toasts) is numbered and
replays what a socket missed while it was away, like the job stream."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client

from tests.webapp.factories import ready_dataset
from webapp.asgi import application
from webapp.jobs.events import append_events
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def _cookie(user) -> bytes:
    c = Client()
    c.force_login(user)
    return f"sessionid={c.cookies['sessionid'].value}".encode()


def _socket(cookie):
    return WebsocketCommunicator(application, "/ws/user/", headers=[(b"cookie", cookie), (b"host", b"localhost"),
                                                                    (b"origin", b"http://localhost")])


def test_changes_missed_while_away_are_replayed_once(alice, bob):
    ds = ready_dataset(alice)
    job = Job.objects.create(owner=alice, dataset=ds, name="j", architecture="mlp")
    other = Job.objects.create(owner=bob, dataset=ready_dataset(bob), name="b", architecture="mlp")
    append_events(job.pk, [("status", {"status": "queued"})])
    cookie = _cookie(alice)

    async def first_visit():
        ws = _socket(cookie)
        assert (await ws.connect())[0]
        hello = await ws.receive_json_from(timeout=5)
        await ws.disconnect()
        return hello

    hello = async_to_sync(first_visit)()
    assert hello["type"] == "hello" and hello["seq"] > 0

    # Away: the job runs and succeeds; bob's job changes too (not alice's business).
    Job.objects.filter(pk=job.pk).update(status="running")
    append_events(job.pk, [("status", {"status": "running"})])
    Job.objects.filter(pk=job.pk).update(status="succeeded")
    append_events(job.pk, [("status", {"status": "succeeded"})])
    append_events(other.pk, [("status", {"status": "running"})])

    async def back():
        ws = _socket(cookie)
        assert (await ws.connect())[0]
        again = await ws.receive_json_from(timeout=5)
        await ws.send_json_to({"after": hello["seq"]})
        replayed = [await ws.receive_json_from(timeout=5)]
        assert await ws.receive_nothing(timeout=0.3)
        await ws.disconnect()
        return again, replayed

    again, replayed = async_to_sync(back)()
    assert again["type"] == "hello" and again["seq"] > hello["seq"]
    assert len(replayed) == 1, replayed  # one job, once, in its state now
    msg = replayed[0]
    assert msg["type"] == "job" and msg["replay"] and msg["job"]["id"] == str(job.pk)
    assert msg["job"]["status"] == "succeeded" and msg["seq"] == again["seq"]
