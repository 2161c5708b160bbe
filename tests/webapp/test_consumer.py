"""The job websocket: access checks on connect, replay from a sequence number, live pushes."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from webapp.asgi import application
from webapp.jobs.events import append_events
from webapp.jobs.consumers import JobConsumer
from tests.webapp.factories import finished_job, running_job

pytestmark = pytest.mark.django_db(transaction=True)


def communicator(job, user, origin=b"http://localhost"):
    app = JobConsumer.as_asgi()
    c = WebsocketCommunicator(app, f"/ws/jobs/{job.pk}/", headers=[(b"origin", origin)])
    c.scope["user"] = user
    c.scope["url_route"] = {"kwargs": {"pk": job.pk}}
    return c


def run(coro_fn):
    return async_to_sync(coro_fn)()


def test_owner_gets_replay_then_live_events(alice):
    job = running_job(alice)
    append_events(job.pk, [("log", {"level": "info", "text": "one"}), ("log", {"level": "info", "text": "two"})])

    async def scenario():
        c = communicator(job, alice)
        connected, _ = await c.connect()
        assert connected
        await c.send_json_to({"after": 1})
        replay = await c.receive_json_from(timeout=5)
        assert [e["seq"] for e in replay["events"]] == [2] and replay["events"][0]["text"] == "two"
        await database_sync_to_async(append_events)(job.pk, [("metric", {"split": "train", "step": 5,
                                                                          "values": {"loss": 1.0}})])
        live = await c.receive_json_from(timeout=5)
        assert live["events"][0]["seq"] == 3 and live["events"][0]["v"] == 1 and live["events"][0]["kind"] == "metric"
        await c.disconnect()

    run(scenario)


@pytest.mark.parametrize("who", ["anonymous", "bob", "inactive"])
def test_refused_connections(alice, bob, who):
    job = finished_job(alice)
    user = {"anonymous": AnonymousUser(), "bob": bob, "inactive": alice}[who]
    if who == "inactive":
        alice.is_active = False
        alice.save()

    async def scenario():
        c = communicator(job, user)
        connected, code = await c.connect()
        assert not connected
        assert code in (4401, 4404)

    run(scenario)


def test_staff_may_watch(alice, staff):
    job = finished_job(alice)

    async def scenario():
        c = communicator(job, staff)
        connected, _ = await c.connect()
        assert connected
        await c.send_json_to({"after": 0})
        msg = await c.receive_json_from(timeout=5)
        assert [e["seq"] for e in msg["events"]] == [1, 2]
        await c.disconnect()

    run(scenario)


def test_foreign_origin_is_refused_by_the_asgi_stack(alice):
    job = finished_job(alice)

    async def scenario():
        for headers in ([(b"origin", b"http://evil.example")], []):
            c = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=headers)
            connected, _ = await c.connect()
            assert not connected

    run(scenario)


def test_user_socket_hears_own_job_changes_only(alice, bob):
    from webapp.jobs.consumers import UserConsumer

    mine, theirs = running_job(alice), running_job(bob)

    async def scenario():
        c = WebsocketCommunicator(UserConsumer.as_asgi(), "/ws/user/")
        c.scope["user"] = alice
        connected, _ = await c.connect()
        assert connected
        await database_sync_to_async(append_events)(theirs.pk, [("status", {"status": "succeeded"})])
        await database_sync_to_async(append_events)(mine.pk, [("log", {"text": "not a status"})])
        await database_sync_to_async(append_events)(mine.pk, [("status", {"status": "failed"})],
                                                    status="failed")
        msg = await c.receive_json_from(timeout=5)
        assert msg["type"] == "job" and msg["job"]["id"] == str(mine.pk) and msg["job"]["status"] == "failed"
        assert await c.receive_nothing(timeout=0.3)
        await c.disconnect()
        anon = WebsocketCommunicator(UserConsumer.as_asgi(), "/ws/user/")
        anon.scope["user"] = AnonymousUser()
        connected, code = await anon.connect()
        assert not connected and code == 4401

    run(scenario)
