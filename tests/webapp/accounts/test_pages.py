"""The accounts pages: sign-in, throttling, the API token page. (Split from tests/webapp/test_pages.py.)"""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_login_page_and_sign_in_rotates_session(alice):
    c = Client()
    assert c.get("/jobs/").status_code == 302
    c.get("/accounts/login/")
    before = c.cookies.get("sessionid")
    r = c.post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    assert r.status_code == 302
    assert c.cookies["sessionid"].value != (before.value if before else None)
    assert c.get("/jobs/").status_code == 200
    r = c.post("/accounts/logout/")
    assert c.get("/jobs/").status_code == 302


def test_wrong_password_is_refused(alice):
    r = Client().post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert r.status_code == 200 and b"match" in r.content and b'role="alert"' in r.content


def test_api_token_page_creates_a_token_shown_once(client_alice, alice):
    r = client_alice.post("/account/token/", {"name": "laptop", "expiry": "30"}, follow=True)
    html = r.content.decode()
    assert 'id="api-token"' in html
    assert 'id="api-token"' not in client_alice.get("/account/profile/").content.decode()
    assert alice.auth_token_set.get().name == "laptop"
    assert client_alice.post("/account/token/", {"name": ""}, follow=True).status_code == 200
    assert alice.auth_token_set.count() == 1  # no name: refused with a message, nothing made


def test_login_is_throttled_per_username(alice, settings):
    c = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert c.post("/accounts/login/", {"username": "alice", "password": "wrong"}).status_code == 200
    assert c.post("/accounts/login/", {"username": "alice", "password": "wrong"}).status_code == 429
    r = c.post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    assert r.status_code == 429 and b"Too many attempts" in r.content  # even the right password now
    assert c.get("/jobs/").status_code == 302
