"""Unsharing or deleting a dataset ends the other users' jobs on it; a deactivated user's jobs end;
cancelling a queued job notifies its owner like any job end."""

from __future__ import annotations

import pytest

from tests.webapp.factories import ready_dataset
from webapp import celery
from webapp.accounts.models import NotificationSettings
from webapp.datasets import services as dataset_services
from webapp.datasets.models import Dataset
from webapp.datasets.validation import DatasetError
from webapp.jobs import services as job_services
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


def _job(owner, ds, status=Job.Status.QUEUED):
    return Job.objects.create(owner=owner, dataset=ds, name="j", architecture="mlp", status=status,
                              train_config={"epochs": 3})


def test_unsharing_ends_the_sharees_jobs_with_the_reason(alice, bob, charlie, django_capture_on_commit_callbacks):
    ds = ready_dataset(alice, "shared")
    dataset_services.share_dataset(ds, "bob")
    dataset_services.share_dataset(ds, "charlie")
    queued, running, charlies, own = (_job(bob, ds), _job(bob, ds, Job.Status.RUNNING), _job(charlie, ds),
                                      _job(alice, ds))
    with django_capture_on_commit_callbacks(execute=True):
        dataset_services.unshare_dataset(ds, "bob", actor=alice)
    queued.refresh_from_db(), running.refresh_from_db(), charlies.refresh_from_db(), own.refresh_from_db()
    assert queued.status == "cancelled" and "stopped sharing" in queued.error
    assert running.cancel_requested and running.status == "running"  # stops at its next step
    assert any("stopped sharing" in e.data["text"] for e in running.events.filter(kind="log"))
    assert charlies.status == "queued" and own.status == "queued"  # still shared / the owner's own


def test_deleting_ends_others_jobs_and_is_not_blocked_by_them(alice, bob):
    ds = ready_dataset(alice, "shared")
    dataset_services.share_dataset(ds, "bob")
    bobs = _job(bob, ds)
    dataset_services.unshare_dataset(ds, "bob")  # ... or still shared: either way
    dataset_services.delete_dataset(ds, actor=alice)
    assert not Dataset.objects.filter(pk=ds.pk).exists()
    bobs.refresh_from_db()
    assert bobs.status == "cancelled"


def test_deleting_with_a_sharees_queued_job(alice, bob):
    ds = ready_dataset(alice, "shared")
    dataset_services.share_dataset(ds, "bob")
    bobs = _job(bob, ds)
    dataset_services.delete_dataset(ds, actor=alice)
    bobs.refresh_from_db()
    assert bobs.status == "cancelled" and "deleted it" in bobs.error


def test_the_owners_own_active_jobs_still_block_a_delete(alice):
    ds = ready_dataset(alice, "mine")
    _job(alice, ds)
    with pytest.raises(DatasetError, match="cancel them first"):
        dataset_services.delete_dataset(ds, actor=alice)


def test_a_deactivated_users_jobs_end(alice, bob, django_capture_on_commit_callbacks):
    ds = ready_dataset(bob)
    queued, running = _job(bob, ds), _job(bob, ds, Job.Status.RUNNING)
    with django_capture_on_commit_callbacks(execute=True):
        bob.is_active = False
        bob.save()
    queued.refresh_from_db(), running.refresh_from_db()
    assert queued.status == "cancelled" and queued.error == "the account was deactivated"
    assert running.cancel_requested


def test_cancelling_a_queued_job_notifies(alice, sent_tasks, django_capture_on_commit_callbacks):
    NotificationSettings.objects.create(user=alice, webhook_url="https://hooks.example.org/h")
    job = _job(alice, ready_dataset(alice))
    with django_capture_on_commit_callbacks(execute=True):
        job_services.cancel_job(job, actor=alice)
    assert sent_tasks == [(celery.NOTIFY_TASK, str(job.pk), "cancelled")]


def test_a_sharees_running_job_ends_cancelled_with_the_reason(alice, bob, django_capture_on_commit_callbacks):
    """The run stops at its next step and the worker reports "cancelled" with no error of its
    own: the job still says why it ended."""
    from webapp.jobs import lifecycle

    ds = ready_dataset(alice, "shared")
    dataset_services.share_dataset(ds, "bob")
    running = _job(bob, ds, Job.Status.RUNNING)
    with django_capture_on_commit_callbacks(execute=True):
        dataset_services.unshare_dataset(ds, "bob", actor=alice)
    lifecycle.finish_job(running.pk, Job.Status.CANCELLED)
    running.refresh_from_db()
    assert running.status == "cancelled" and "stopped sharing" in running.error
    status = running.events.filter(kind="status").order_by("-seq").first()
    assert "stopped sharing" in status.data.get("error", "")


def test_the_owners_own_cancel_of_a_running_job_has_no_reason(alice):
    from webapp.jobs import lifecycle

    running = _job(alice, ready_dataset(alice), Job.Status.RUNNING)
    job_services.cancel_job(running, actor=alice)
    lifecycle.finish_job(running.pk, Job.Status.CANCELLED)
    running.refresh_from_db()
    assert running.status == "cancelled" and running.error == ""


def test_a_job_that_raced_the_unshare_or_the_deactivation_does_not_run(alice, bob):
    """Submitted after the unshare (or deactivation) had ended the owner's jobs: its run
    start refuses it with the reason, and it fails with that error (RunStart.check)."""
    from webapp.jobs import lifecycle

    ds = ready_dataset(alice, "shared")
    dataset_services.share_dataset(ds, "bob")
    raced = _job(bob, ds, Job.Status.RUNNING)
    ds.shared_with.remove(bob)  # as if the unshare had committed between submit's check and insert
    with pytest.raises(PermissionError, match="stopped sharing"):
        lifecycle._run_start(Job.objects.select_related("dataset").get(pk=raced.pk), "w1").check()
    own = _job(alice, ds, Job.Status.RUNNING)
    assert lifecycle._run_start(Job.objects.select_related("dataset").get(pk=own.pk), "w1").failure is None
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    with pytest.raises(PermissionError, match="deactivated"):
        lifecycle._run_start(Job.objects.select_related("dataset").get(pk=own.pk), "w1").check()
