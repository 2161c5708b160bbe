"""Multi-device jobs (TrainConfig.gpus) at the web boundary and in the dispatcher: refused at
submit when no worker has that many devices, placed whole on one worker (gang), keeping their
place in the queue, with honest wait reasons."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.webapp.factories import api_token, ready_dataset
from webapp.celery import TRAIN_TASK
from webapp.cluster.models import Worker
from webapp.jobs import scheduler
from webapp.jobs.models import Job
from webapp.jobs.scheduler import dispatch

pytestmark = pytest.mark.django_db


def worker(name, devices=1, gpu=None):
    gpus = [{"index": i, "name": gpu, "memory_total": 24 * 10**9} for i in range(devices)] if gpu else []
    return Worker.objects.create(name=name, hostname=name.partition("@")[2] or "h", queues="train",
                                 device="cuda:0" if gpus else "cpu", gpus=gpus, devices=devices)


def job(owner, minutes_ago=0, gpus=1, nodes=1, **kw):
    j = Job.objects.create(owner=owner, name="j", architecture="mlp", train_config={"gpus": gpus, "nodes": nodes},
                           **kw)
    Job.objects.filter(pk=j.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
    return j


def busy(w, owner):
    return job(owner, 99, status=Job.Status.RUNNING, worker_name=w.name)


@pytest.fixture
def run(django_capture_on_commit_callbacks, sent_tasks):
    """One dispatcher pass: {job id: the queue it was sent to}."""
    def _run():
        with django_capture_on_commit_callbacks(execute=True):
            dispatch()
        out = {t[1]: q for t, q in zip(sent_tasks, sent_tasks.queues) if t[0] == TRAIN_TASK}
        sent_tasks.clear(), sent_tasks.queues.clear()
        return out
    return _run


def reason(j):
    j.refresh_from_db()
    return j.wait_reason


def _api(user) -> Client:
    api = Client()
    api.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
    return api


def test_a_job_needing_more_devices_than_any_worker_has_is_refused_at_submit(alice, sent_tasks):
    ds, api = ready_dataset(alice), _api(alice)
    worker("cpu@a", devices=2)
    worker("cpu@b", devices=1)
    r = api.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp", "train_config": {"gpus": 4}},
                 content_type="application/json")
    assert r.status_code == 400, r.content
    assert r.json()["errors"]["train_config.gpus"] == "no worker has 4 devices: the largest online has 2 (cpu@a)"
    assert not Job.objects.exists()
    r = api.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp", "train_config": {"gpus": 2}},
                 content_type="application/json")
    assert r.status_code == 201, r.content
    assert Job.objects.get().train_config["gpus"] == 2
    # The API and the form say what a job may use.
    assert api.get("/api/architectures/").json()["devices"] == (
        "at most 2 on the workers online now: up to 2 CPU processes (cpu@a)")


def test_the_form_says_what_the_devices_will_be(client_alice):
    worker("gpu0@box", devices=2, gpu="NVIDIA L4")
    html = client_alice.get("/jobs/new/").content.decode()
    assert 'name="tc_gpus"' in html
    assert "up to 2 × NVIDIA L4 on one machine (gpu0@box)" in html
    assert scheduler.describe_devices(2, []) == "2 CPU processes"


def test_gang_placement_waits_for_a_whole_worker_then_starts(alice, bob, run, settings):
    """A 2-device job goes only to a worker with 2 free devices; a 1-device job behind it may go
    ahead on a worker that cannot fit it, but not on the one it waits for."""
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 5
    small_w, big_w = worker("one@h", devices=1), worker("two@h", devices=2)
    running = busy(big_w, bob)
    big = job(alice, 10, gpus=2)
    assert run() == {}
    assert reason(big) == "waiting for 2 free devices on one machine; the largest has 1 free"
    small = job(alice, 5)
    sent = run()
    assert list(sent) == [str(small.pk)] and Job.objects.get(pk=small.pk).worker_name == "one@h"
    assert reason(big) == "waiting for 2 free devices on one machine; the largest has 0 free"
    # The small one runs; the big worker frees up; a newer small job arrives: the big job, ahead
    # of it, takes the big worker; the newer small job waits (the one-device worker is busy).
    Job.objects.filter(pk=small.pk).update(status=Job.Status.RUNNING, worker_name="one@h", dispatched_at=None)
    Job.objects.filter(pk=running.pk).update(status=Job.Status.SUCCEEDED)
    newer = job(alice, 1)
    sent = run()
    assert list(sent) == [str(big.pk)]
    assert Job.objects.get(pk=big.pk).worker_name == "two@h"
    assert reason(newer) == "waiting for a free worker; next"


def test_head_of_line_reservation_keeps_the_big_worker_for_the_big_job(alice, bob, run, settings):
    """bob's 2-device job is first in line but cannot start (the 2-device worker is busy); the
    free 1-device worker may take alice's small job, and nothing is placed on a worker it waits for."""
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 5
    one, two_a, two_b = worker("one@h", 1), worker("two-a@h", 2), worker("two-b@h", 2)
    busy(two_a, alice), busy(one, alice)
    big = job(bob, 10, gpus=2)
    sent = run()
    assert list(sent) == [str(big.pk)] and Job.objects.get(pk=big.pk).worker_name == "two-b@h"
    # A small job never takes a 2-device worker from a waiting 2-device job: with only a
    # 2-device worker free and the big job ahead in line, the big one goes there.
    Job.objects.filter(pk=big.pk).update(status=Job.Status.RUNNING, dispatched_at=None)
    big2, small = job(bob, 8, gpus=2), job(bob, 7)
    Job.objects.filter(worker_name="two-a@h").update(status=Job.Status.SUCCEEDED)
    assert list(run()) == [str(big2.pk)]
    assert reason(small) == "waiting for a free worker; next"


def test_a_worker_fits_only_jobs_within_its_device_count(alice):
    worker("cpu@a", devices=2)
    j2, j3 = job(alice, gpus=2), job(alice, gpus=3)
    assert scheduler.worker_fits("cpu@a", j2.pk) and not scheduler.worker_fits("cpu@a", j3.pk)
    assert scheduler.devices_needed(Job(train_config={})) == 1  # jobs stored before the field
    j3.refresh_from_db()
    assert scheduler.devices_refusal(3) == "no worker has 3 devices: the largest online has 2 (cpu@a)"
