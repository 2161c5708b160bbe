from __future__ import annotations

import pytest
from django.test import Client

from webapp.accounts.models import AuditEvent
from tests.webapp.factories import finished_job, ready_dataset, running_job

pytestmark = pytest.mark.django_db


def actions():
    return [(e.actor_name, e.action) for e in AuditEvent.objects.order_by("created_at", "id")]


def test_actions_are_recorded_with_their_actor(alice, bob, staff, sent_tasks, django_capture_on_commit_callbacks):
    c = Client()
    c.post("/accounts/login/", {"username": "alice", "password": "nope"})
    c.post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    ds = ready_dataset(alice)
    c.post(f"/datasets/{ds.pk}/share/", {"username": "bob"})
    c.post(f"/datasets/{ds.pk}/edit/", {"name": "renamed"})
    with django_capture_on_commit_callbacks(execute=True):
        c.post("/jobs/new/", {"dataset": str(ds.pk), "architecture": "mlp"})
    done = finished_job(alice)
    c.get(f"/jobs/{done.pk}/artifacts/config.json")
    c.post(f"/jobs/{done.pk}/delete/")
    c.post("/account/token/", {"name": "laptop", "expiry": "90"})
    admin = Client()
    admin.force_login(staff)
    victim = running_job(bob)
    admin.post(f"/api/jobs/{victim.pk}/cancel/")
    assert actions() == [
        ("", "login_failed"), ("alice", "login"), ("alice", "dataset.share"), ("alice", "dataset.update"),
        ("alice", "job.submit"), ("alice", "artifact.download"), ("alice", "job.delete"), ("alice", "token.create"),
        ("root", "login"), ("root", "job.cancel"),
    ]
    assert AuditEvent.objects.get(action="login_failed").details == {"username": "alice"}
    assert AuditEvent.objects.get(action="artifact.download").details == {"file": "config.json"}


def test_admin_changes_are_logged_and_the_log_is_read_only(staff, alice):
    admin = Client()
    admin.force_login(staff)
    ds = ready_dataset(alice)
    r = admin.post(f"/admin/datasets/dataset/{ds.pk}/change/", {"name": "by admin", "owner": alice.pk,
                                                                 "kind": "tabular", "description": "",
                                                                 "progress": "1", "shared_with": []})
    assert r.status_code == 302, r.content[:2000]
    assert AuditEvent.objects.filter(action="admin.change", actor_name="root").exists()
    assert admin.get("/admin/accounts/auditevent/").status_code == 200
    event = AuditEvent.objects.first()
    assert admin.post(f"/admin/accounts/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()
