"""Site-wide middleware: CSRF on forms and the session API, the security headers.

Split from tests/webapp/test_pages.py so the tests mirror the packages."""

from __future__ import annotations

import os

import pytest
from django.test import Client

from tests.webapp.factories import running_job

pytestmark = pytest.mark.django_db


def test_csrf_enforced_on_forms_and_session_api(alice):
    c = Client(enforce_csrf_checks=True)
    c.force_login(alice)
    job = running_job(alice)
    assert c.post(f"/jobs/{job.pk}/cancel/").status_code == 403
    assert c.post(f"/api/jobs/{job.pk}/cancel/").status_code == 403
    job.refresh_from_db()
    assert not job.cancel_requested


def test_security_headers(client_alice):
    r = client_alice.get("/jobs/")
    csp = r["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r["X-Frame-Options"] == "DENY"
    assert os.environ.get("TRAINYARD_DATA_DIR")
