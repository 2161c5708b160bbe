"""Job ownership (issue 14, items 1-4): the owner token fences every write of a run that lost its
job; worker state heals from the running jobs; leases are judged by the database's clock; a
dropped connection at the end of a job is retried. Unit tests on the test database; the real
stack versions are in tests/integration/test_ownership.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from tests.webapp.factories import ready_dataset
from webapp.cluster.models import Worker
from webapp.jobs import dbretry, lifecycle, scheduler
from webapp.jobs.events import Fenced, append_events
from webapp.jobs.models import Artifact, Job, JobEvent

pytestmark = pytest.mark.django_db


def worker(name="w@h"):
    return Worker.objects.create(name=name, hostname="h", queues="train", device="cpu")


def queued(owner):
    return Job.objects.create(owner=owner, dataset=ready_dataset(owner), name="j", architecture="mlp",
                              model_config={"hidden_sizes": [4]}, train_config={"epochs": 1})


def lapse(job):
    """Its run's lease lapses (the worker paused) and the watchdog requeues it."""
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert lifecycle.requeue_lost_jobs() == [job.pk]


def split_brain(alice):
    """A run on w1 that was paused past its lease, and the run on w2 that took the job over."""
    worker("w1@h"), worker("w2@h")
    job = queued(alice)
    stale = lifecycle.start_run(job.pk, "w1@h")
    lapse(job)
    live = lifecycle.start_run(job.pk, "w2@h")
    assert isinstance(live, lifecycle.RunStart) and live.token == stale.token + 1
    return job, stale, live


def test_every_claim_bumps_the_owner_token_even_when_a_requeue_gives_the_attempt_back(alice):
    worker()
    job = queued(alice)
    first = lifecycle.start_run(job.pk, "w@h")
    assert lifecycle.requeue_stopped_job(job.pk, "w@h", token=first.token)  # shutdown: attempts 1 -> 0
    second = lifecycle.start_run(job.pk, "w@h")
    job.refresh_from_db()
    assert job.attempts == 1 and (first.token, second.token) == (1, 2) == (1, job.owner_token)


def test_a_stale_runs_events_progress_and_heartbeat_are_refused(alice):
    job, stale, live = split_brain(alice)
    before = Job.objects.get(pk=job.pk)
    with pytest.raises(Fenced):
        append_events(job.pk, [("metric", {"step": 5})], token=stale.token, step=5, heartbeat_at=timezone.now())
    after = Job.objects.get(pk=job.pk)
    assert (after.last_seq, after.step, after.heartbeat_at) == (before.last_seq, before.step, before.heartbeat_at)
    assert not JobEvent.objects.filter(job=job, kind="metric").exists()
    append_events(job.pk, [("metric", {"step": 5})], token=live.token, step=5)  # the owner writes
    assert JobEvent.objects.filter(job=job, kind="metric").count() == 1


def test_a_stale_runs_finish_writes_nothing_and_the_live_one_finishes_once(alice, data_dir):
    job, stale, live = split_brain(alice)
    art = job.directory / "artifacts"
    art.mkdir(parents=True)
    (art / "model.safetensors").write_bytes(b"stale")
    assert lifecycle.end_run(stale, "succeeded", metrics={"accuracy": 0.1}, artifacts=["model.safetensors"]) == "fenced"
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.metrics == {} and not Artifact.objects.filter(job=job).exists()
    assert lifecycle.end_run(live, "succeeded", metrics={"accuracy": 0.9}, artifacts=["model.safetensors"]) == "succeeded"
    assert lifecycle.end_run(stale, "succeeded", metrics={"accuracy": 0.1}) == "fenced"  # after the end too
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.metrics == {"accuracy": 0.9}
    statuses = list(JobEvent.objects.filter(job=job, kind="status").values_list("data__status", flat=True))
    assert statuses.count("succeeded") == 1


def test_a_stale_run_cannot_requeue_the_job_of_the_live_run(alice):
    worker("w1@h")
    job = queued(alice)
    stale = lifecycle.start_run(job.pk, "w1@h")
    lapse(job)
    live = lifecycle.start_run(job.pk, "w1@h")  # the same worker name took it again (a restart)
    assert lifecycle.end_run(stale, "cancelled", requeue=True) == "fenced"
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.owner_token == live.token


def test_files_move_into_place_only_under_the_fence(alice, data_dir):
    job, stale, live = split_brain(alice)
    tmp, final = job.directory / ".x.tmp", job.directory / "x"
    tmp.write_text("stale")
    assert not lifecycle.fenced_replace(job.pk, stale.token, [(str(tmp), str(final))])
    assert tmp.exists() and not final.exists()
    assert lifecycle.fenced_replace(job.pk, live.token, [(str(tmp), str(final))])
    assert final.read_text() == "stale" and not tmp.exists()


def test_a_deleted_job_refuses_its_stale_run(alice):
    job, stale, _ = split_brain(alice)
    Job.objects.filter(pk=job.pk).delete()
    with pytest.raises(Fenced):
        append_events(job.pk, [("log", {"text": "x"})], token=stale.token)
    assert not lifecycle.fenced_replace(job.pk, stale.token, [])
    assert lifecycle.end_run(stale, "succeeded") == "fenced"


def test_the_reporter_of_a_fenced_run_stops_it_and_keeps_nothing(alice):
    from workers.adapters.reporter import Reporter

    job, stale, live = split_brain(alice)
    reporter = Reporter(job.pk, token=stale.token)
    reporter.emit("metric", {"split": "train", "step": 1, "values": {}})
    reporter.flush()
    assert reporter.fenced and reporter.control.should_stop and reporter.control.stop_reason == "fenced"
    reporter.control.request_stop("cancel")  # nothing outranks the fence
    assert reporter.control.stop_reason == "fenced"
    reporter.flush()  # nothing more is written by a fenced run
    assert not JobEvent.objects.filter(job=job, kind="metric").exists()


# --- worker state heals (item 2) -------------------------------------------------------------------

def test_a_worker_left_showing_a_finished_job_is_free_and_heals_on_its_heartbeat(alice):
    from workers.adapters import registry

    registry.register("w@h", ["train", "train.w@h"])
    job = queued(alice)
    start = lifecycle.start_run(job.pk, "w@h")
    # The run's end was recorded, but not on the worker row (a connection dropped there, the pool
    # process was killed, a last-attempt claim refused).
    lifecycle.finish_job(job.pk, "failed", error="boom", token=start.token)
    assert Worker.objects.get(name="w@h").current_job_id == job.pk
    nxt = queued(alice)
    assert scheduler.dispatch() == [str(nxt.pk)]  # free by what is true, not by the column
    registry.heartbeat("w@h")
    assert Worker.objects.get(name="w@h").current_job_id is None
    running = lifecycle.start_run(nxt.pk, "w@h")
    Worker.objects.filter(name="w@h").update(current_job=None)
    registry.heartbeat("w@h")
    assert Worker.objects.get(name="w@h").current_job_id == running.job_id  # healed both ways


# --- one clock (item 3) ----------------------------------------------------------------------------

def test_the_lease_is_judged_by_the_database_clock_not_the_callers(alice, monkeypatch):
    worker()
    job = queued(alice)
    lifecycle.start_run(job.pk, "w@h")
    ahead = timezone.now() + timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: ahead)  # this process's clock runs an hour ahead
    assert lifecycle.requeue_lost_jobs() == []
    assert lifecycle.claim_job(job.pk, "other@h") is None
    assert Job.objects.get(pk=job.pk).status == Job.Status.RUNNING


def test_only_training_workers_run_the_watchdog():
    from workers.adapters.registry import runs_scheduler

    assert runs_scheduler(["train", "ingest", "infer"]) and runs_scheduler(["train", "train.w@h"])
    assert not runs_scheduler(["ingest"]) and not runs_scheduler(["ingest", "infer"])


# --- a dropped connection (item 4) --------------------------------------------------------------

@pytest.mark.django_db(transaction=True)  # retry_db never retries inside an open transaction
def test_retry_db_reconnects_with_back_off_and_gives_up_after_its_attempts(monkeypatch):
    sleeps, calls = [], []
    monkeypatch.setattr(dbretry.time, "sleep", sleeps.append)

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("terminating connection due to administrator command")
        return "ok"

    assert dbretry.retry_db(flaky) == "ok" and sleeps == [0.5, 1.0]

    def broken():
        raise OperationalError("server closed the connection unexpectedly")

    with pytest.raises(OperationalError):
        dbretry.retry_db(broken, attempts=3)


@pytest.mark.django_db(transaction=True)
def test_end_run_survives_a_dropped_connection(alice, monkeypatch):
    worker()
    job = queued(alice)
    start = lifecycle.start_run(job.pk, "w@h")
    monkeypatch.setattr(dbretry.time, "sleep", lambda s: None)
    real, failures = lifecycle.finish_job, []

    def drops_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise OperationalError("the connection was dropped")
        return real(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "finish_job", drops_once)
    assert lifecycle.end_run(start, "succeeded") == "succeeded" and failures == [1]
    assert Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED
