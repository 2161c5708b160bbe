"""The dispatcher (webapp/jobs/scheduler.py): capacity, fair share, priorities, limits, GPU
requirements, drained workers, and honest wait reasons. Celery sends are recorded (sent_tasks)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.webapp.factories import ready_dataset
from webapp.celery import TRAIN_TASK
from webapp.cluster.models import Worker
from webapp.jobs import lifecycle, services
from webapp.jobs.scheduler import dispatch
from webapp.jobs.models import Job, UserLimits

GB = 1_000_000_000


def worker(name, mem_gb=None, gpu="NVIDIA L4", queues="train,ingest", **kw):
    gpus = [{"index": 0, "name": gpu, "memory_total": mem_gb * GB}] if mem_gb else []
    return Worker.objects.create(name=name, hostname="h", queues=queues, device="cuda:0" if gpus else "cpu",
                                 gpus=gpus, **kw)


def job(owner, minutes_ago=0, **kw):
    j = Job.objects.create(owner=owner, name="j", architecture="mlp", **kw)
    Job.objects.filter(pk=j.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
    return j


def sent_ids(sent_tasks):
    return [args[0] for name, *args in sent_tasks if name == TRAIN_TASK]


def reason(j):
    j.refresh_from_db()
    return j.wait_reason


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    def _run():
        with django_capture_on_commit_callbacks(execute=True):
            return dispatch()
    return _run


def test_no_worker_nothing_is_sent_and_the_reason_says_so(alice, sent_tasks, run):
    j = job(alice)
    assert run() == [] and sent_tasks == []
    assert reason(j) == "waiting for a worker: none is online"


def test_one_slot_per_idle_worker_and_fair_share(alice, bob, sent_tasks, run):
    worker("w1")
    a1, a2 = job(alice, 10), job(alice, 9)
    b1 = job(bob, 1)
    # alice has a job running on another worker: bob (fewest running) goes first despite being newer.
    running = job(alice, 20, status=Job.Status.RUNNING, worker_name="w0")
    assert run() == [str(b1.pk)] and sent_ids(sent_tasks) == [str(b1.pk)]
    assert reason(a1) == "waiting for a free worker; next" and reason(a2) == "waiting for a free worker; 1 ahead"
    assert run() == []  # w1 holds the dispatched job until it starts
    lifecycle.finish_job(running.pk, Job.Status.SUCCEEDED)
    Job.objects.filter(pk=b1.pk).update(status=Job.Status.RUNNING, worker_name="w1", dispatched_at=None)
    worker("w2")
    assert run() == [str(a1.pk)]  # then the oldest


def test_priority_orders_within_equal_share(alice, sent_tasks, run):
    worker("w1")
    old, urgent = job(alice, 10), job(alice, 1, priority=5)
    assert run() == [str(urgent.pk)]
    assert reason(old) == "waiting for a free worker; next"


def test_running_limit_default_and_override(alice, bob, settings, sent_tasks, run):
    settings.TRAINYARD_MAX_RUNNING_PER_USER = 1
    worker("w1"), worker("w2"), worker("w3")
    a1, a2 = job(alice, 3), job(alice, 2)
    assert run() == [str(a1.pk)]
    assert reason(a2) == "you have 1 running (limit 1)"
    UserLimits.objects.create(user=alice, max_running=2)
    assert run() == [str(a2.pk)]


def test_queued_limit_override_refuses_submit(alice, settings):
    UserLimits.objects.create(user=alice, max_queued=1)
    ds = ready_dataset(alice)
    services.submit_job(alice, ds, "mlp")
    with pytest.raises(services.SubmitError) as info:
        services.submit_job(alice, ds, "mlp")
    assert info.value.status == 429 and "the limit is 1" in str(info.value)
    assert Job.objects.count() == 1


def test_gpu_requirements_route_and_explain(alice, bob, sent_tasks, run):
    small, big = worker("small", mem_gb=16), worker("big", mem_gb=80, gpu="NVIDIA H100")
    needs_big = job(alice, 5, min_gpu_memory_gb=24)
    needs_a100 = job(bob, 4, gpu_type="A100")
    anything = job(bob, 3)
    sent = run()
    assert set(sent) == {str(needs_big.pk), str(anything.pk)}
    needs_big.refresh_from_db(), anything.refresh_from_db()
    assert needs_big.worker_name == big.name and anything.worker_name == small.name  # smallest that fits
    assert reason(needs_a100) == "waiting for a A100 GPU: no such worker is online"
    gone = job(alice, 1, min_gpu_memory_gb=200)
    run()
    assert reason(gone) == "waiting for a GPU with ≥ 200 GB: no such worker is online"


def test_drained_stale_and_retired_workers_get_nothing(alice, sent_tasks, run):
    worker("drained", draining=True)
    worker("retired", draining=True, status=Worker.Status.RETIRED)
    worker("stale", last_heartbeat=timezone.now() - timedelta(minutes=5))
    j = job(alice)
    assert run() == [] and sent_tasks == []
    assert reason(j) == "waiting for a worker: none is online and taking jobs (drained)"


def test_a_dispatched_job_whose_worker_vanished_is_released(alice, sent_tasks, run):
    w = worker("w1")
    j = job(alice)
    assert run() == [str(j.pk)]
    Worker.objects.filter(pk=w.pk).update(last_heartbeat=timezone.now() - timedelta(minutes=5))
    worker("w2")
    assert run() == [str(j.pk)]
    j.refresh_from_db()
    assert j.worker_name == "w2"


def test_submit_dispatches_after_commit_and_cancel_frees_the_slot(alice, bob, sent_tasks,
                                                                  django_capture_on_commit_callbacks):
    worker("w1")
    ds = ready_dataset(alice)
    with django_capture_on_commit_callbacks(execute=True):
        first = services.submit_job(alice, ds, "mlp")
        second = services.submit_job(alice, ds, "mlp")
    assert sent_ids(sent_tasks) == [str(first.pk)]
    assert Job.objects.get(pk=second.pk).to_dict()["wait_reason"] == "waiting for a free worker; next"
    with django_capture_on_commit_callbacks(execute=True):
        services.cancel_job(Job.objects.get(pk=first.pk), actor=alice)  # queued: cancelled at once
    assert sent_ids(sent_tasks) == [str(first.pk), str(second.pk)]


def test_api_priority_and_requirements(alice, staff, sent_tasks):
    from rest_framework.test import APIClient

    ds = ready_dataset(alice)
    c = APIClient()
    c.force_authenticate(alice)
    r = c.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp", "priority": 3}, format="json")
    assert r.status_code == 400 and "admin may raise" in r.json()["errors"]["priority"]
    r = c.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp", "min_gpu_memory_gb": 0}, format="json")
    assert r.status_code == 400 and "min_gpu_memory_gb" in r.json()["errors"]
    assert Job.objects.count() == 0
    r = c.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp", "priority": -2,
                              "min_gpu_memory_gb": 24, "gpu_type": "A100"}, format="json")
    assert r.status_code == 201, r.json()
    j = Job.objects.get()
    assert (j.priority, j.min_gpu_memory_gb, j.gpu_type) == (-2, 24, "A100")
    assert services.submit_job(staff, ready_dataset(staff, "s"), "mlp", priority=10).priority == 10


def test_each_job_goes_to_the_queue_of_the_worker_chosen_for_it(alice, bob, sent_tasks, run):
    """Workers consume a queue of their own (train.<name>): a job needing the big GPU cannot be
    taken first by another idle worker from the shared queue. A worker without one (older
    version) still gets the shared queue."""
    worker("small@h", mem_gb=16, queues="train,ingest,train.small@h")
    worker("big@h", mem_gb=80, gpu="NVIDIA H100", queues="train,ingest,train.big@h")
    worker("old@h", mem_gb=16)  # no queue of its own
    needs_big = job(alice, 5, min_gpu_memory_gb=24)
    first, second = job(bob, 4), job(bob, 3)
    run()
    routed = dict(zip(sent_ids(sent_tasks), sent_tasks.queues))
    assert routed[str(needs_big.pk)] == "train.big@h"
    for j in (first, second):
        j.refresh_from_db()
    by_worker = {first.worker_name: routed[str(first.pk)], second.worker_name: routed[str(second.pk)]}
    assert by_worker == {"small@h": "train.small@h", "old@h": None}


def test_a_job_dispatched_to_a_worker_drained_before_taking_it_is_dispatched_again(alice, sent_tasks, run):
    a = worker("a@h", queues="train,train.a@h")
    b = worker("b@h", queues="train,train.b@h")
    j = job(alice)
    run()
    j.refresh_from_db()
    first = j.worker_name
    Worker.objects.filter(name=first).update(draining=True)  # drained while the message waits
    run()
    j.refresh_from_db()
    other = ({a.name, b.name} - {first}).pop()
    assert j.worker_name == other and j.dispatched_at is not None
    assert sent_tasks.queues == [f"train.{first}", f"train.{other}"]


def test_the_wait_reason_holds_still_during_a_broker_outage(alice, monkeypatch, run):
    """Every pass dispatches again and every send fails again: what a page reads at any moment
    (here: while the send is being tried, after the pass committed) must not flap."""
    from webapp.jobs import scheduler

    seen = []

    def down(*args, **kwargs):
        seen.append(Job.objects.values_list("wait_reason", flat=True).get(pk=j.pk))
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("webapp.celery.send", down)
    worker("cpu@h")
    j = job(alice)
    for _ in range(4):
        run()
        seen.append(reason(j))
    assert set(seen[1:]) == {scheduler.BROKER_DOWN}, seen
