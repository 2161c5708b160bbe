"""What a job offers once it ends, as the fragment the live page fetches (/jobs/<id>/outputs/),
and the last checkpoint of a cancelled or failed job (owner only)."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.webapp.factories import finished_job, running_job
from webapp.accounts.models import AuditEvent
from webapp.jobs.models import Job


def _client(user):
    c = Client()
    c.force_login(user)
    return c


def _checkpoints(job, *epochs):
    folder = job.directory / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for e in epochs:
        (folder / f"ckpt-{e:06d}.pt").write_bytes(b"state of epoch %d" % e)
    return job


def _ended(owner, status):
    job = _checkpoints(finished_job(owner), 2, 3)
    Job.objects.filter(pk=job.pk).update(status=status)
    job.refresh_from_db()
    return job


@pytest.mark.django_db
def test_the_fragment_of_a_succeeded_job_offers_try_onnx_files_and_continue(alice):
    job = _checkpoints(finished_job(alice), 1)
    html = _client(alice).get(f"/jobs/{job.pk}/outputs/").content.decode()
    for needle in ('id="try-link"', 'id="onnx-export"', f"/jobs/{job.pk}/artifacts/config.json", 'id="continue-form"',
                   'id="job-outputs-actions"', 'id="artifacts-card"'):
        assert needle in html, needle
    assert "<html" not in html and 'id="checkpoint-link"' not in html
    assert html.count("csrfmiddlewaretoken") == 1  # the continue form carries its token


@pytest.mark.django_db
def test_the_fragment_of_a_running_job_offers_nothing_yet(alice):
    job = running_job(alice)
    html = _client(alice).get(f"/jobs/{job.pk}/outputs/").content.decode()
    assert 'id="job-outputs-actions"' in html and "Available when the job succeeds." in html
    for absent in ("try-link", "onnx-export", "continue-form", "checkpoint-link"):
        assert absent not in html


@pytest.mark.django_db
def test_staff_sees_the_fragment_but_not_the_owners_continue_box(alice, staff):
    job = _checkpoints(finished_job(alice), 1)
    html = _client(staff).get(f"/jobs/{job.pk}/outputs/").content.decode()
    assert 'id="try-link"' in html and "continue-form" not in html


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["cancelled", "failed"])
def test_an_ended_job_offers_its_newest_checkpoint_to_its_owner(alice, status):
    job = _ended(alice, status)
    c = _client(alice)
    for url in (f"/jobs/{job.pk}/", f"/jobs/{job.pk}/outputs/"):
        html = c.get(url).content.decode()
        assert f'href="/jobs/{job.pk}/checkpoint/"' in html and "(epoch 3)" in html, url
        assert 'id="try-link"' not in html
    resp = c.get(f"/jobs/{job.pk}/checkpoint/")
    assert resp.status_code == 200 and resp.streaming
    assert b"".join(resp.streaming_content) == b"state of epoch 3"
    assert resp["Content-Disposition"].startswith("attachment") and f"{job.pk}-epoch3.pt" in resp["Content-Disposition"]
    assert AuditEvent.objects.filter(action="checkpoint.download", actor=alice).count() == 1


@pytest.mark.django_db
def test_the_checkpoint_is_404_for_everyone_else_and_for_other_states(alice, bob, staff):
    job = _ended(alice, "cancelled")
    assert _client(bob).get(f"/jobs/{job.pk}/checkpoint/").status_code == 404
    assert _client(staff).get(f"/jobs/{job.pk}/checkpoint/").status_code == 404
    assert "checkpoint-link" not in _client(staff).get(f"/jobs/{job.pk}/").content.decode()
    assert Client().get(f"/jobs/{job.pk}/checkpoint/").status_code == 302  # to sign in
    succeeded = _checkpoints(finished_job(alice), 1)  # its model is the output; the continue box has the rest
    assert _client(alice).get(f"/jobs/{succeeded.pk}/checkpoint/").status_code == 404
    bare = finished_job(alice)
    Job.objects.filter(pk=bare.pk).update(status="failed")
    assert _client(alice).get(f"/jobs/{bare.pk}/checkpoint/").status_code == 404
    assert "checkpoint-link" not in _client(alice).get(f"/jobs/{bare.pk}/").content.decode()
