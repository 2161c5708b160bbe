"""Websocket sign-in with an API token in the handshake's Authorization header (the CLI's
`jobs follow`), through the whole ASGI stack: origin check, session, token, router, consumer."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from tests.webapp.factories import running_job
from tests.webapp.tokens import api_key
from webapp.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def _connect(path: str, authorization: str | None, origin: bytes = b"http://localhost", replay: bool = True):
    async def go():
        headers = [(b"host", b"localhost"), (b"origin", origin)]
        if authorization is not None:
            headers.append((b"authorization", authorization.encode()))
        c = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await c.connect()
        frame = None
        if connected and replay:
            await c.send_json_to({"after": 0})
            frame = json.loads(await c.receive_from(timeout=5))
        if connected:
            await c.disconnect()
        return connected, code, frame

    return async_to_sync(go)()


def test_token_opens_own_job_socket_and_replays(alice, bob):
    job = running_job(alice)
    path = f"/ws/jobs/{job.pk}/"
    connected, _, frame = _connect(path, f"Token {api_key(alice)}")
    assert connected and frame["type"] == "events" and frame["replay"] is True
    assert _connect(path, f"Token {api_key(bob)}")[:2] == (False, 4404)


@pytest.mark.parametrize("header", ["Token not-a-key", "Token ", "Basic YWxpY2U6cHc=", "Token a b"])
def test_bad_or_foreign_schemes_are_anonymous(alice, header):
    job = running_job(alice)
    assert _connect(f"/ws/jobs/{job.pk}/", header)[:2] == (False, 4401)


def test_inactive_user_token_is_refused(alice):
    job = running_job(alice)
    key = api_key(alice)
    alice.is_active = False
    alice.save()
    assert _connect(f"/ws/jobs/{job.pk}/", f"Token {key}")[:2] == (False, 4401)


def test_token_does_not_bypass_the_origin_check(alice):
    job = running_job(alice)
    key = api_key(alice)
    assert not _connect(f"/ws/jobs/{job.pk}/", f"Token {key}", origin=b"http://evil.example")[0]


def test_user_socket_with_token(alice):
    assert _connect("/ws/user/", f"Token {api_key(alice)}", replay=False)[0]
    assert _connect("/ws/user/", "Token wrong", replay=False)[:2] == (False, 4401)
