"""Retry a failed job: same id, back in the queue, attempts reset; only failed jobs; the owner
(or staff with the permission); the active-job limit holds. And one wording for a full disk."""

from __future__ import annotations

import errno

import pytest
from django.contrib.auth.models import User
from django.test import Client

from models_zoo.contracts import disk_full_message, is_disk_full, what_was_written
from tests.webapp.factories import api_token, finished_job, ready_dataset
from webapp.jobs import services
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


def _failed(owner, ds=None):
    job = finished_job(owner, ds)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED, attempts=3, error="boom",
                                         worker_name="cpu@h")
    return Job.objects.get(pk=job.pk)


def api(user):
    c = Client()
    c.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
    return c


def test_retry_requeues_the_same_job_with_attempts_reset(alice, sent_tasks):
    job = _failed(alice)
    r = api(alice).post(f"/api/jobs/{job.pk}/retry/")
    assert r.status_code == 200 and r.json()["id"] == str(job.pk)
    job.refresh_from_db()
    assert job.status == "queued" and job.attempts == 0 and job.error == "" and job.worker_name == ""
    assert job.finished_at is None
    texts = [e.data.get("text", "") for e in job.events.filter(kind="log")]
    assert any("retried by alice" in t for t in texts)


def test_only_failed_jobs_and_only_their_owner(alice, bob):
    done = finished_job(alice)
    r = api(alice).post(f"/api/jobs/{done.pk}/retry/")
    assert r.status_code == 409 and "only a failed job" in r.json()["error"]
    failed = _failed(alice)
    assert api(bob).post(f"/api/jobs/{failed.pk}/retry/").status_code == 404
    helpdesk = User.objects.create_user("helpdesk", "h@x.org", "pw-helpdesk-1", is_staff=True)
    assert api(helpdesk).post(f"/api/jobs/{failed.pk}/retry/").status_code == 403
    assert Job.objects.get(pk=failed.pk).status == "failed"


def test_retry_respects_the_active_job_limit(alice, settings):
    settings.TRAINYARD_MAX_ACTIVE_JOBS_PER_USER = 1
    ds = ready_dataset(alice)
    Job.objects.create(owner=alice, dataset=ds, name="q", architecture="mlp", status=Job.Status.QUEUED)
    job = _failed(alice, ds)
    with pytest.raises(services.RetryError) as err:
        services.retry_job(job, actor=alice)
    assert err.value.status == 429


def test_the_page_button_and_view(alice):
    job = _failed(alice)
    c = Client()
    c.force_login(alice)
    html = c.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="retry-form"' in html and 'id="retry-form" hidden' not in html
    r = c.post(f"/jobs/{job.pk}/retry/", follow=True)
    assert "resumes from its last checkpoint" in r.content.decode()
    assert Job.objects.get(pk=job.pk).status == "queued"
    assert 'id="retry-form" hidden' in c.get(f"/jobs/{job.pk}/").content.decode()


class SafetensorError(Exception):
    """What safetensors raises: the OS message inside its own exception type."""


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })"),
    RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file data/0: file write failed"),
])
def test_every_disk_full_reads_the_same(exc):
    if isinstance(exc, RuntimeError):  # torch.save's error is raised from the OSError of the write
        try:
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as os_error:
                raise exc from os_error
        except RuntimeError as chained:
            exc = chained
    assert is_disk_full(exc)
    message = disk_full_message("cpu@host", what_was_written(exc))
    assert message.startswith("the disk is full on worker cpu@host while writing ") and "press Retry" in message


def test_other_errors_are_not_disk_full():
    assert not is_disk_full(ValueError("shapes do not match"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
