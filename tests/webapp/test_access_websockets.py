"""The access matrix for websocket routes, through the whole ASGI stack (origin check, session
auth, router): it walks `websocket_urlpatterns`, so a new socket route without a rule here fails."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client

from tests.webapp.factories import running_job
from webapp.asgi import application
from webapp.jobs.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

# pattern -> the kind of object in it (None: a route of the signed-in user's own stream)
WS_ROUTES = {"ws/jobs/<uuid:pk>/": "job", "ws/user/": None}


def test_every_websocket_route_is_classified():
    assert {str(p.pattern) for p in websocket_urlpatterns} == set(WS_ROUTES)


def _cookie(user) -> bytes:
    if user is None:
        return b""
    c = Client()
    c.force_login(user)
    return f"sessionid={c.cookies['sessionid'].value}".encode()


def _connect(path: str, cookie: bytes, origin: bytes = b"http://localhost") -> tuple[bool, int | None]:
    async def go():
        headers = [(b"host", b"localhost"), (b"origin", origin)] + ([(b"cookie", cookie)] if cookie else [])
        c = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await c.connect()
        if connected:
            await c.disconnect()
        return connected, code

    return async_to_sync(go)()


@pytest.mark.parametrize("route", sorted(WS_ROUTES))
def test_who_may_open_each_socket(alice, bob, staff, route):
    job = running_job(alice)
    path = "/" + route.replace("<uuid:pk>", str(job.pk))
    owner_only = WS_ROUTES[route] is not None
    cookies = {name: _cookie(u) for name, u in [("alice", alice), ("bob", bob), ("staff", staff), ("anonymous", None)]}
    assert _connect(path, cookies["alice"])[0]
    assert _connect(path, cookies["staff"])[0]
    if owner_only:
        assert _connect(path, cookies["bob"]) == (False, 4404)
    else:
        assert _connect(path, cookies["bob"])[0]  # bob's own stream
    assert _connect(path, cookies["anonymous"]) == (False, 4401)
    # A foreign or missing Origin is refused before authentication, whoever asks.
    assert not _connect(path, cookies["alice"], origin=b"http://evil.example")[0]
    assert not _connect(path, cookies["alice"], origin=b"")[0]
    alice.is_active = False
    alice.save()
    assert _connect(path, cookies["alice"]) == (False, 4401)


@pytest.mark.parametrize("origin, host, ok", [
    (b"http://localhost", b"localhost", True),
    (b"http://127.0.0.1:8000", b"127.0.0.1:8000", True),
    (b"http://127.0.0.1:9999", b"127.0.0.1:8000", False),  # another program on the same machine
    (b"https://127.0.0.1:8000", b"127.0.0.1:8000", False),  # another scheme
    (b"http://localhost", b"evil.example", False),  # Host not in ALLOWED_HOSTS
    (b"null", b"localhost", False),
])
def test_origin_must_match_scheme_host_and_port(alice, origin, host, ok):
    job = running_job(alice)
    cookie = _cookie(alice)

    async def go():
        headers = [(b"host", host), (b"origin", origin), (b"cookie", cookie)]
        c = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=headers)
        connected, _ = await c.connect()
        if connected:
            await c.disconnect()
        return connected

    assert async_to_sync(go)() is ok


def test_csrf_trusted_origins_and_tls_proxy_are_honoured(alice, settings):
    from webapp.websocket_origin import origin_allowed

    settings.CSRF_TRUSTED_ORIGINS = ["https://*.partner.org"]
    settings.ALLOWED_HOSTS = ["ty.example.org"]
    trusted = {"type": "websocket", "headers": [(b"host", b"ty.example.org"), (b"origin", b"https://a.partner.org")]}
    assert origin_allowed(trusted)
    same = {"type": "websocket", "scheme": "ws",
            "headers": [(b"host", b"ty.example.org"), (b"origin", b"https://ty.example.org"),
                        (b"x-forwarded-proto", b"https")]}
    assert not origin_allowed(same)  # the proxy header counts only when configured
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert origin_allowed(same)


PROJECT_ROLES = ("owner", "viewer", "member", "maintainer", "outsider", "staff")


@pytest.mark.parametrize("role", PROJECT_ROLES)
def test_the_user_socket_is_each_users_own_stream(role):
    """ws/user/ carries the signed-in user's own jobs whatever their projects: every role opens
    their own (a teammate's job changes reach its page's socket and the lists, not this stream)."""
    from django.contrib.auth.models import User

    user = User.objects.create_user(f"u-{role}", password="x", is_staff=role == "staff")
    assert _connect("/ws/user/", _cookie(user))[0]


@pytest.mark.parametrize("role", PROJECT_ROLES)
def test_the_job_socket_follows_the_project_roles(role):
    """ws/jobs/<id>/ of a project's job, through the whole stack: every role of the project and
    staff open it and receive the job's live events; an outsider is refused (4404)."""
    from channels.db import database_sync_to_async
    from django.contrib.auth.models import User

    from webapp.jobs.events import append_events
    from webapp.jobs.models import Job
    from webapp.projects.services import add_member, create_project

    users = {r: User.objects.create_user(f"u-{r}", password="x", is_staff=r == "staff") for r in PROJECT_ROLES}
    project = create_project(users["maintainer"], "team")
    for r in ("owner", "viewer", "member"):
        add_member(users["maintainer"], project, users[r].username, "member" if r == "owner" else r)
    job = running_job(users["owner"])
    Job.objects.filter(pk=job.pk).update(project=project)
    cookie = _cookie(users[role])

    async def go():
        headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"cookie", cookie)]
        c = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=headers)
        connected, code = await c.connect()
        if not connected:
            return False, code, None
        await database_sync_to_async(append_events)(job.pk, [("metric", {"split": "train", "step": 1,
                                                                          "values": {"loss": 0.7}})])
        frame = await c.receive_json_from(timeout=10)
        await c.disconnect()
        return True, None, frame

    connected, code, frame = async_to_sync(go)()
    if role == "outsider":
        assert (connected, code) == (False, 4404)
    else:
        assert connected, role
        assert frame["events"][0]["kind"] == "metric" and frame["events"][0]["values"] == {"loss": 0.7}
