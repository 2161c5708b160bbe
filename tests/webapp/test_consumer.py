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
        assert (await c.receive_json_from(timeout=5))["type"] == "hello"  # the stream's number
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


# -- A9: a socket lives only as long as the sign-in that opened it ----------------------------
def _signed_in_sockets(job, user):
    """Two browsers signed in as `user`, each with a job socket and a user socket."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import Client

    from webapp.jobs.consumers import UserConsumer

    browsers = []
    for _ in range(2):
        client = Client()
        client.force_login(user)
        key = client.session.session_key
        sockets = [communicator(job, user), WebsocketCommunicator(UserConsumer.as_asgi(), "/ws/user/")]
        for s in sockets:
            s.scope["user"] = user
            s.scope["session"] = SessionStore(key)
        browsers.append((client, sockets))
    return browsers


async def _closed(sock) -> bool:
    out = await sock.receive_output(timeout=5)
    if out.get("type") == "websocket.send" and '"hello"' in (out.get("text") or ""):
        out = await sock.receive_output(timeout=5)  # the user stream's greeting (its number) comes first
    return out == {"type": "websocket.close", "code": 4401}


@pytest.mark.parametrize("how", ["sign-out", "password-change", "deactivation"])
def test_sockets_close_when_the_sign_in_ends(alice, how):
    job = running_job(alice)
    (first, first_sockets), (_, other_sockets) = _signed_in_sockets(job, alice)

    def end_sign_in():
        if how == "sign-out":
            assert first.post("/accounts/logout/").status_code == 302
        elif how == "password-change":
            alice.set_password("An0ther-long-passphrase")
            alice.save()
        else:
            alice.is_active = False
            alice.save()

    async def scenario():
        for s in first_sockets + other_sockets:
            assert (await s.connect())[0]
        await database_sync_to_async(end_sign_in)()
        for s in first_sockets:
            assert await _closed(s), how
        for s in other_sockets:
            if how == "sign-out":  # only the session that signed out
                out = await s.receive_output(timeout=0.3) if not await s.receive_nothing(timeout=0.3) else None
                assert out is None or '"hello"' in (out.get("text") or "")
                assert await s.receive_nothing(timeout=0.3)
                await s.disconnect()
            else:
                assert await _closed(s), how

    run(scenario)


def test_the_password_change_page_changes_it_and_closes_other_sockets(alice):
    from django.test import Client

    alice.set_password("Old-long-passphrase-1")
    alice.save()
    job = running_job(alice)
    (_, _), (other, other_sockets) = _signed_in_sockets(job, alice)
    client = Client()
    client.force_login(alice)
    assert b"Change password" in client.get("/accounts/password/").content
    bad = client.post("/accounts/password/", {"old_password": "wrong", "new_password1": "x", "new_password2": "x"})
    assert bad.status_code == 200 and b"incorrectly" in bad.content

    async def scenario():
        for s in other_sockets:
            assert (await s.connect())[0]
        r = await database_sync_to_async(client.post)("/accounts/password/", {
            "old_password": "Old-long-passphrase-1", "new_password1": "New-long-passphrase-2",
            "new_password2": "New-long-passphrase-2"})
        assert r.status_code == 302 and r["Location"].endswith("/accounts/password/done/")
        for s in other_sockets:
            assert await _closed(s)

    run(scenario)
    alice.refresh_from_db()
    assert alice.check_password("New-long-passphrase-2")
    assert client.get("/account/profile/").status_code == 200  # this browser stays signed in
    assert other.get("/account/profile/").status_code == 302  # the other one is signed out
