"""A project's GPU quota (running GPUs at once over all its jobs), held by the dispatcher in its
one transaction: jobs over it wait with the reason, others go ahead, parallel passes never
exceed it."""

from __future__ import annotations


import pytest
from django.contrib.auth.models import User

from tests.webapp.factories import dispatch_in_parallel
from webapp.celery import TRAIN_TASK
from webapp.cluster.models import Worker
from webapp.jobs.models import Job
from webapp.jobs.scheduler import dispatch
from webapp.projects.models import Project


def gpu_worker(name, devices=1):
    gpus = [{"index": i, "name": "NVIDIA A100", "memory_total": 80 * 10**9} for i in range(devices)]
    return Worker.objects.create(name=name, hostname="h", queues="train", device="cuda:0", gpus=gpus, devices=devices)


def cpu_worker(name):
    return Worker.objects.create(name=name, hostname="h", queues="train", device="cpu")


def queued(owner, project=None, gpus=1, name="j"):
    return Job.objects.create(owner=owner, project=project, name=name, architecture="mlp", train_config={"gpus": gpus})


def reason(job):
    job.refresh_from_db()
    return job.wait_reason


@pytest.fixture
def users(db, settings):
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 10
    return [User.objects.create_user(f"u{i}", password="x") for i in range(4)]


@pytest.fixture
def run(django_capture_on_commit_callbacks, sent_tasks):
    def _run():
        with django_capture_on_commit_callbacks(execute=True):
            dispatch()
        sent = [t[1] for t in sent_tasks if t[0] == TRAIN_TASK]
        sent_tasks.clear()
        return sent
    return _run


@pytest.mark.django_db
def test_jobs_over_the_quota_wait_with_the_reason_and_others_go_ahead(users, run):
    vision = Project.objects.create(name="vision", gpu_quota=2)
    for i in range(5):
        gpu_worker(f"g{i}@h")
    mine = [queued(users[i % 3], vision, name=f"v{i}") for i in range(3)]
    personal = queued(users[3], name="personal")
    sent = run()
    assert len(sent) == 3 and str(personal.pk) in sent
    waiting = [j for j in mine if str(j.pk) not in sent]
    assert len(waiting) == 1
    assert reason(waiting[0]) == "project vision is at its GPU quota: 2 of 2 in use"
    # A running job of the project still holds its GPU; when one ends, the waiting job goes.
    first = next(j for j in mine if str(j.pk) in sent)
    Job.objects.filter(pk=first.pk).update(status=Job.Status.RUNNING, dispatched_at=None)
    assert run() == []
    Job.objects.filter(pk=first.pk).update(status=Job.Status.SUCCEEDED)
    assert run() == [str(waiting[0].pk)]


@pytest.mark.django_db
def test_multi_gpu_jobs_count_every_gpu_and_cpu_workers_count_none(users, run):
    vision = Project.objects.create(name="vision", gpu_quota=3)
    gpu_worker("big@h", devices=4)
    gpu_worker("one@h")
    running = Job.objects.create(owner=users[0], project=vision, name="r", architecture="mlp",
                                 train_config={"gpus": 2}, status=Job.Status.RUNNING, worker_name="big@h")
    pair = queued(users[1], vision, gpus=2)
    too_big = queued(users[2], vision, gpus=4)
    assert run() == []
    assert reason(pair) == "project vision is near its GPU quota: 2 of 3 in use, this job needs 2"
    assert reason(too_big) == "project vision has a GPU quota of 3: this job asks for 4 GPUs"
    single = queued(users[3], vision)
    assert run() == [str(single.pk)]  # 2 + 1 = 3: fits
    # A CPU worker uses no GPU: a job that fits it is not held by the quota.
    cpu_worker("cpu@h")
    plain = queued(users[0], vision, name="plain")
    assert run() == [str(plain.pk)]
    assert Job.objects.get(pk=plain.pk).worker_name == "cpu@h"
    running.refresh_from_db()
    assert running.status == Job.Status.RUNNING


@pytest.mark.django_db
def test_no_quota_means_no_limit(users, run):
    free = Project.objects.create(name="free")
    for i in range(3):
        gpu_worker(f"g{i}@h")
    jobs = [queued(users[i], free) for i in range(3)]
    assert sorted(run()) == sorted(str(j.pk) for j in jobs)


@pytest.mark.django_db(transaction=True)
def test_parallel_passes_never_exceed_the_quota(sent_tasks, settings):
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 10
    users = [User.objects.create_user(f"p{i}", password="x") for i in range(4)]
    vision = Project.objects.create(name="vision", gpu_quota=3)
    for i in range(8):
        gpu_worker(f"w{i}@h", devices=2)
    jobs = [queued(users[i % 4], vision, gpus=1 + (i % 2), name=f"j{i}") for i in range(10)]
    dispatch_in_parallel(threads=8, passes=3)
    sent = [args[0] for name, *args in sent_tasks if name == TRAIN_TASK]
    assert len(sent) == len(set(sent))  # each job released once
    dispatched = list(Job.objects.exclude(dispatched_at=None))
    used = sum(j.train_config["gpus"] for j in dispatched)
    assert 2 <= used <= 3, used  # the quota holds (and is used: a 2-GPU and a 1-GPU job, or 1+1+...)
    assert len({j.worker_name for j in dispatched}) == len(dispatched)
    assert all("GPU quota" in j.wait_reason for j in Job.objects.filter(dispatched_at=None)), [
        (j.train_config, j.wait_reason) for j in Job.objects.filter(dispatched_at=None)]
    assert Job.objects.filter(status=Job.Status.QUEUED).count() == len(jobs)
