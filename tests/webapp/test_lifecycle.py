"""The job's run lifecycle as the training task sees it (webapp/jobs/lifecycle.py: start_run,
end_run), the one liveness rule of workers, and queue positions listed without a query per job."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.webapp.factories import ready_dataset
from webapp.cluster.models import Worker
from webapp.jobs import lifecycle, scheduler
from webapp.jobs.models import Job, JobEvent, queue_positions


def worker(name="w@h", **kw):
    return Worker.objects.create(name=name, hostname="h", queues="train", device="cpu", **kw)


def queued(owner, dataset=None, **kw):
    return Job.objects.create(owner=owner, dataset=dataset or ready_dataset(owner), name="j",
                              architecture="mlp", model_config={"hidden_sizes": [4]},
                              train_config={"epochs": 1}, **kw)


def test_start_run_claims_and_gives_the_spec(alice):
    w = worker()
    job = queued(alice)
    start = lifecycle.start_run(job.pk, w.name)
    assert isinstance(start, lifecycle.RunStart) and start.failure is None and not start.is_hf
    assert (start.job_id, start.worker, start.architecture) == (job.pk, w.name, "mlp")
    assert start.model_config == {"hidden_sizes": [4]} and start.train_config == {"epochs": 1}
    assert start.dataset_dir == str(job.dataset.directory) and start.output_dir == str(job.directory)
    assert start.extra == {"dataset_name": job.dataset.name}
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.worker_name == w.name and job.attempts == 1
    assert Worker.objects.get(pk=w.pk).current_job_id == job.pk


def test_start_run_skips_with_the_reason(alice, monkeypatch):
    monkeypatch.setattr(lifecycle.time, "sleep", lambda s: None)
    drained = worker("drained@h", draining=True)
    job = queued(alice, dispatched_at=timezone.now(), worker_name="drained@h")
    assert lifecycle.start_run(job.pk, drained.name) == lifecycle.Skipped("drained")
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and job.dispatched_at is None and job.worker_name == ""
    cpu = worker("cpu@h")
    big = queued(alice, min_gpu_memory_gb=24)
    assert lifecycle.start_run(big.pk, cpu.name) == lifecycle.Skipped("does not fit")
    cancelled = queued(alice, status=Job.Status.CANCELLED)
    assert lifecycle.start_run(cancelled.pk, cpu.name) == lifecycle.Skipped("not claimed")
    assert Job.objects.get(pk=big.pk).status == Job.Status.QUEUED


def test_a_deleted_dataset_surfaces_as_a_failure_of_the_claimed_run(alice):
    w = worker()
    job = queued(alice)
    job.dataset.delete()
    start = lifecycle.start_run(job.pk, w.name)
    with pytest.raises(FileNotFoundError, match="dataset was deleted"):
        start.check()
    assert lifecycle.end_run(start, "failed", error="FileNotFoundError: the job's dataset was deleted") == "failed"
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "dataset was deleted" in job.error
    assert Worker.objects.get(pk=w.pk).current_job_id is None


def test_end_run_requeues_a_shutdown_stop_unless_cancelled(alice):
    w = worker()
    job = queued(alice)
    start = lifecycle.start_run(job.pk, w.name)
    assert lifecycle.end_run(start, "cancelled", requeue=True) == "requeued"
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and job.attempts == 0  # a shutdown costs no attempt
    start = lifecycle.start_run(job.pk, w.name)
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)  # the owner cancels meanwhile: that wins
    assert lifecycle.end_run(start, "cancelled", requeue=True) == "cancelled"
    assert Job.objects.get(pk=job.pk).status == Job.Status.CANCELLED


def test_end_run_of_an_interrupted_process_only_frees_the_slot(alice):
    w = worker()
    job = queued(alice)
    start = lifecycle.start_run(job.pk, w.name)
    assert lifecycle.end_run(start, None) is None
    assert Job.objects.get(pk=job.pk).status == Job.Status.RUNNING  # the watchdog requeues it later
    assert Worker.objects.get(pk=w.pk).current_job_id is None


def test_one_liveness_rule_for_the_row_the_scheduler_and_the_sweep(db, settings):
    settings.TRAINYARD_HEARTBEAT_SECONDS = 5
    now = timezone.now()
    fresh = worker("fresh@h", last_heartbeat=now - timedelta(seconds=14))
    silent = worker("silent@h", last_heartbeat=now - timedelta(seconds=16))
    assert fresh.is_alive and not silent.is_alive
    assert [w.name for w in scheduler.live_workers()] == ["fresh@h"]
    assert scheduler.mark_silent_workers_offline() == 1
    assert Worker.objects.get(pk=silent.pk).status == Worker.Status.OFFLINE


def test_queue_positions_of_a_list_cost_one_query_whatever_its_length(alice, bob):
    first = queued(bob)
    mine = [queued(alice) for _ in range(5)]
    Job.objects.filter(pk=mine[-1].pk).update(status=Job.Status.RUNNING)
    jobs = list(Job.objects.select_related("owner", "dataset").prefetch_related("artifacts", "tags").order_by("created_at"))
    with CaptureQueriesContext(connection) as positions_queries:
        positions = queue_positions(jobs)
    assert len(positions_queries) == 1
    assert positions == {j.pk: j.queue_position for j in jobs if j.status == Job.Status.QUEUED}
    assert positions[first.pk] == 0 and positions[mine[3].pk] == 4 and mine[-1].pk not in positions
    with CaptureQueriesContext(connection) as listed:
        dicts = Job.to_dicts(jobs)
    assert len(listed) == 1  # the positions; owner, dataset, artifacts and tags were fetched with the jobs (as the list does)
    assert [d["queue_position"] for d in dicts] == [0, 1, 2, 3, 4, None]


@pytest.mark.django_db
def test_a_requeued_job_no_longer_names_its_previous_worker(alice):
    """Lost (watchdog) or handed back (shutdown): queued again, the page must not name the worker."""
    from datetime import timedelta

    from django.utils import timezone

    from tests.webapp.factories import running_job
    from webapp.jobs import lifecycle
    from webapp.jobs.models import Job

    lost = running_job(alice)
    Job.objects.filter(pk=lost.pk).update(worker_name="cpu@a", heartbeat_at=timezone.now() - timedelta(hours=1))
    assert lost.pk in lifecycle.requeue_lost_jobs()
    back = running_job(alice)
    Job.objects.filter(pk=back.pk).update(worker_name="cpu@b", heartbeat_at=timezone.now(), attempts=1)
    token = Job.objects.values_list("owner_token", flat=True).get(pk=back.pk)
    assert lifecycle.requeue_stopped_job(back.pk, "cpu@b", token)
    for job in Job.objects.filter(pk__in=[lost.pk, back.pk]):
        assert job.status == "queued" and job.worker_name == "", (job.status, job.worker_name)


def test_a_handed_back_job_says_why_its_worker_stopped(alice, settings, redis_url):
    """The log line names the cause that can be told afterwards: a drain (the worker's row), a
    lost connection to Redis (probed), else a shutdown; never "shutting down" when Redis went."""
    from tests.webapp.factories import running_job
    def handed_back(name: str) -> str:
        worker(name=name, draining=name.startswith("drain"))
        job = running_job(alice)
        Job.objects.filter(pk=job.pk).update(worker_name=name, attempts=1)
        assert lifecycle.requeue_stopped_job(job.pk, name)
        return JobEvent.objects.filter(job=job, kind="log").last().data["text"]

    settings.CELERY_BROKER_URL = f"{redis_url}/0"
    assert "(it is shutting down)" in handed_back("cpu@a")
    assert "(it is draining)" in handed_back("drain@a")
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing answers there
    assert "(it lost its connection to the job queue (Redis))" in handed_back("cpu@b")
