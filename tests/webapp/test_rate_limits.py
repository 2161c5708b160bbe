"""Rate limits per user and action (webapp/throttles.py), a cap on open uploads, and a replay
rate per websocket: 429 with Retry-After, other users unaffected, reads never counted."""

from __future__ import annotations

import uuid

import pytest
from channels.testing import WebsocketCommunicator
from django.core.cache import caches
from django.test import Client, override_settings

from tests.webapp.factories import api_token, finished_job, ready_dataset
from webapp.asgi import application

pytestmark = pytest.mark.django_db


def api(user):
    c = Client()
    c.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
    return c


def _rates(**rates):
    from django.conf import settings

    rf = dict(settings.REST_FRAMEWORK)
    rf["DEFAULT_THROTTLE_RATES"] = {**rf["DEFAULT_THROTTLE_RATES"], **rates}
    return override_settings(REST_FRAMEWORK=rf)


def test_submits_past_the_rate_get_429_with_retry_after(alice, bob):
    ds = ready_dataset(alice)
    with _rates(submit="5/min"):
        c = api(alice)
        codes = [c.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp"},
                        content_type="application/json").status_code for _ in range(7)]
        assert codes[:5] == [201] * 5 and codes[5:] == [429, 429]
        r = c.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp"}, content_type="application/json")
        assert r.status_code == 429 and 1 <= int(r["Retry-After"]) <= 60
        assert c.get("/api/jobs/").status_code == 200  # reading is not submitting
        other = ready_dataset(bob)
        assert api(bob).post("/api/jobs/", {"dataset": str(other.pk), "architecture": "mlp"},
                             content_type="application/json").status_code == 201  # per user


def test_tries_past_the_rate_get_429(alice):
    job = finished_job(alice)
    c = Client()
    c.force_login(alice)
    with _rates(**{"try": "3/min"}):
        responses = [c.post(f"/jobs/{job.pk}/try/predict/", {"features": "1, 2"}) for _ in range(5)]
    codes = [r.status_code for r in responses]
    assert codes[3:] == [429, 429] and 429 not in codes[:3], codes
    assert 1 <= int(responses[-1]["Retry-After"]) <= 60 and "too many requests" in responses[-1].json()["error"]


def test_the_open_upload_cap(alice, settings):
    settings.TRAINYARD_MAX_OPEN_UPLOADS = 3
    c = api(alice)
    codes = [c.post("/api/uploads/", {"filename": f"f{i}.csv", "size": 100}, content_type="application/json").status_code
             for i in range(4)]
    assert codes == [201, 201, 201, 429]
    r = c.post("/api/uploads/", {"filename": "g.csv", "size": 100}, content_type="application/json")
    assert "uploads in progress, the limit is 3" in r.json()["error"]


def test_throttles_count_on_the_shared_redis_cache(alice):
    """The same limit with Django's Redis cache on the machine's Redis (own DB and prefix)."""
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, db=13, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    cache = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                         "LOCATION": "redis://127.0.0.1:6379/13", "KEY_PREFIX": "ty-test-" + uuid.uuid4().hex}}
    ds = ready_dataset(alice)
    with override_settings(CACHES=cache), _rates(submit="2/min"):
        c = api(alice)
        codes = [c.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp"},
                        content_type="application/json").status_code for _ in range(3)]
        caches["default"].clear()
    assert codes == [201, 201, 429]


@pytest.mark.django_db(transaction=True)
def test_replays_are_rate_limited_per_socket(alice):
    from asgiref.sync import async_to_sync

    job = finished_job(alice)
    session = _session_cookie(alice)

    async def go():
        comm = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=[
            (b"cookie", f"sessionid={session}".encode()), (b"host", b"localhost"), (b"origin", b"http://localhost")])
        connected, _ = await comm.connect()
        assert connected
        answers = []
        for _ in range(30):
            await comm.send_json_to({"after": 0})
            answers.append(await comm.receive_json_from(timeout=5))
        await comm.disconnect()
        return answers

    answers = async_to_sync(go)()
    replays = [a for a in answers if a["type"] == "events"]
    refused = [a for a in answers if a["type"] == "error"]
    assert 10 <= len(replays) < 15 and len(refused) == 30 - len(replays)
    assert all(a["retry_after"] > 0 for a in refused)


def _session_cookie(user):
    c = Client()
    c.force_login(user)
    return c.cookies["sessionid"].value
