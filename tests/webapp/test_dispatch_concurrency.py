"""The dispatcher run by many processes at once (every web request that submits, every worker
heartbeat): passes are serialised by row locks (PostgreSQL) or the write lock (SQLite), so no
job is released twice and no worker gets two jobs. Threads here have their own connections."""

from __future__ import annotations


import pytest
from django.contrib.auth.models import User

from tests.webapp.factories import dispatch_in_parallel
from webapp.celery import TRAIN_TASK
from webapp.cluster.models import Worker
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_passes_release_each_job_once_and_fill_each_worker_once(sent_tasks):
    users = [User.objects.create_user(f"u{i}", password="x") for i in range(4)]
    for i in range(3):
        Worker.objects.create(name=f"w{i}@h", hostname="h", queues="train", device="cpu")
    jobs = [Job.objects.create(owner=users[i % 4], name=f"j{i}", architecture="mlp") for i in range(12)]
    dispatch_in_parallel(threads=8, passes=3)
    sent = [args[0] for name, *args in sent_tasks if name == TRAIN_TASK]
    assert len(sent) == len(set(sent)) == 3, sent  # three free workers, three jobs, each once
    dispatched = Job.objects.exclude(dispatched_at=None)
    assert sorted(str(j.pk) for j in dispatched) == sorted(sent)
    assert sorted(j.worker_name for j in dispatched) == ["w0@h", "w1@h", "w2@h"]  # one each
    assert len({j.owner_id for j in dispatched}) == 3  # fair share: three different users
    assert Job.objects.filter(status=Job.Status.QUEUED).count() == len(jobs)
