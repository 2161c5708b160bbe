from __future__ import annotations

import json

import requests
from websockets.sync.client import connect


def login(stack, username: str, password: str) -> requests.Session:
    """A browser-like session: CSRF cookie from the form, then the sign-in POST."""
    s = requests.Session()
    s.get(stack.url("/accounts/login/"))
    r = s.post(stack.url("/accounts/login/"), data={
        "username": username, "password": password, "csrfmiddlewaretoken": s.cookies["csrftoken"],
    }, headers={"Referer": stack.url("/accounts/login/")}, allow_redirects=False)
    assert r.status_code == 302, r.text[:500]
    return s


def open_socket(stack, session: requests.Session | None, job_id: str, origin: str | None = "default"):
    headers = {}
    if session is not None:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    if origin == "default":
        origin = stack.base_url
    if origin:
        headers["Origin"] = origin
    ws_url = stack.base_url.replace("http://", "ws://") + f"/ws/jobs/{job_id}/"
    return connect(ws_url, additional_headers=headers, open_timeout=10)


def receive_events(ws, timeout: float) -> list[dict]:
    msg = json.loads(ws.recv(timeout=timeout))
    assert msg["type"] == "events"
    return msg["events"]
