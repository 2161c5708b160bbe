"""The Reporter on its own: Django's test database (SQLite), no Redis, no Celery, no training.
The channel-layer publish is replaced by a list."""

from __future__ import annotations

import time

import pytest

from tests.webapp.factories import running_job
from webapp.jobs import events as events_mod
from webapp.jobs.events import append_events
from webapp.jobs.models import Job, JobEvent
from workers.adapters import reporter as reporter_mod
from workers.adapters.reporter import Reporter
from workers.training.callbacks import Control, TrainState

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    sent: list = []
    monkeypatch.setattr(events_mod, "publish", lambda job_id, events: sent.append((job_id, events)))
    return sent


@pytest.fixture
def job(alice):
    return running_job(alice)


def _state(step=0, epoch=0, steps_per_epoch=10) -> TrainState:
    return TrainState(epochs=5, epoch=epoch, step=step, steps_per_epoch=steps_per_epoch, total_steps=50)


def _stored(job, kind):
    return list(JobEvent.objects.filter(job=job, kind=kind).order_by("seq").values_list("data", flat=True))


# -- the control: why the run stops ---------------------------------------------------------------


def test_control_says_why_it_stops():
    control = Control()
    assert not control.should_stop and control.stop_reason is None
    control.request_stop("requeue")
    assert control.should_stop and control.stop_reason == "requeue"
    control.request_stop("cancel")  # a user's cancel outranks the shutdown
    assert control.stop_reason == "cancel"
    control.request_stop("requeue")
    assert control.stop_reason == "cancel"
    with pytest.raises(ValueError):
        control.request_stop("bored")
    # Callers that only say "stop" stop as a cancel; False clears it.
    plain = Control()
    plain.should_stop = True
    assert plain.stop_reason == "cancel"
    plain.should_stop = False
    assert not plain.should_stop and plain.stop_reason is None


def test_a_cancel_read_from_the_database_stops_with_reason_cancel(job, published):
    reporter = Reporter(job.pk, flush_seconds=0.1)
    reporter.flush()
    assert reporter.control.stop_reason is None
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    reporter.flush()
    assert reporter.control.should_stop and reporter.control.stop_reason == "cancel"
    assert not reporter.requeue


def test_requeue_stops_with_reason_requeue(job, published):
    reporter = Reporter(job.pk, flush_seconds=0.1)
    reporter.request_requeue()  # the SIGTERM handler's call
    assert reporter.control.should_stop and reporter.control.stop_reason == "requeue" and reporter.requeue
    reporter.flush()  # nothing in the database overrides it
    assert reporter.control.stop_reason == "requeue"

    # A requeue flagged in the database (the worker's main process shutting down) reads the same.
    other = Reporter(job.pk, flush_seconds=0.1)
    Job.objects.filter(pk=job.pk).update(requeue_requested=True)
    other.flush()
    assert other.control.stop_reason == "requeue"


def test_a_cancel_outranks_a_shutdown(job, published):
    reporter = Reporter(job.pk, flush_seconds=0.1)
    reporter.request_requeue()
    Job.objects.filter(pk=job.pk).update(cancel_requested=True, requeue_requested=True)
    reporter.flush()
    assert reporter.control.stop_reason == "cancel" and not reporter.requeue


# -- replay after a restart ---------------------------------------------------------------------


def test_replayed_steps_are_not_reported_twice(job, published):
    # Before the crash: metrics up to step 40, the confusion and samples of epoch 2.
    append_events(job.pk, [("metric", {"split": "train", "step": 35, "values": {"loss": 1.0}}),
                           ("metric", {"split": "val", "step": 40, "values": {"loss": 0.9}}),
                           ("confusion", {"epoch": 2, "matrix": [[1]]}),
                           ("samples", {"epoch": 2, "items": []})])
    reporter = Reporter(job.pk, flush_seconds=0.1)
    control = reporter.control
    # The restarted run resumes from its epoch-1 checkpoint (step 20) and replays steps 21..
    for step in (25, 40):
        reporter.on_log(_state(step), control, "train", {"loss": 0.5})
    reporter.on_eval(_state(40, epoch=2), control, {"loss": 0.8, "confusion": [[2]]})
    reporter.on_samples(_state(40, epoch=2), control, [{"item": "x"}])
    # ...then goes past what was stored.
    reporter.on_log(_state(41), control, "train", {"loss": 0.4})
    reporter.on_eval(_state(60, epoch=3), control, {"loss": 0.7, "confusion": [[3]]})
    reporter.on_samples(_state(60, epoch=3), control, [{"item": "y"}])
    reporter.flush()

    assert [d["step"] for d in _stored(job, "metric")] == [35, 40, 41]
    assert [d["epoch"] for d in _stored(job, "confusion")] == [2, 3]
    assert _stored(job, "confusion")[-1]["matrix"] == [[3]]
    assert [d["epoch"] for d in _stored(job, "samples")] == [2, 3]


def test_a_fresh_job_reports_from_step_zero(job, published):
    reporter = Reporter(job.pk, flush_seconds=0.1)
    reporter.on_log(_state(0), reporter.control, "train", {"loss": 2.0})
    reporter.on_eval(_state(10, epoch=1), reporter.control, {"confusion": [[1]]})
    reporter.flush()
    assert [d["step"] for d in _stored(job, "metric")] == [0]
    assert len(_stored(job, "confusion")) == 1


# -- the flusher's token bucket -------------------------------------------------------------------


class FlushLog:
    """Stands in for Reporter.flush: takes the buffer like it, records when and how much."""

    def __init__(self, reporter):
        self.reporter = reporter
        self.flushes: list[tuple[float, int]] = []

    def __call__(self):
        r = self.reporter
        with r._lock:
            events, r._buffer = r._buffer, []
        if events:
            self.flushes.append((time.monotonic(), len(events)))


def _flusher(job, monkeypatch, flush_seconds):
    reporter = Reporter(job.pk, flush_seconds=flush_seconds)
    log = FlushLog(reporter)
    monkeypatch.setattr(reporter, "flush", log)
    return reporter, log


def test_a_steady_stream_of_events_is_flushed_at_most_at_the_rate(job, monkeypatch):
    rate, seconds = 0.2, 1.2
    reporter, log = _flusher(job, monkeypatch, rate)
    reporter.start()
    sent = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        reporter.emit("log", {"text": "x"})
        sent += 1
        time.sleep(0.005)
    reporter.close()
    assert sum(n for _, n in log.flushes) == sent  # nothing lost, everything batched
    # BURST back to back, then about one per `rate` (one more for the final flush at close).
    assert len(log.flushes) <= reporter_mod.BURST + seconds / rate + 1, log.flushes
    assert len(log.flushes) >= seconds / rate / 2, log.flushes  # it does flush while events keep coming
    assert len(log.flushes) < sent / 5  # batched, not one write per event


def test_an_epoch_end_burst_does_not_wait_for_the_rate_limit(job, monkeypatch):
    # A long interval: any flush that waited for a token would be late by about a second.
    reporter, log = _flusher(job, monkeypatch, 1.0)
    reporter.start()
    time.sleep(0.05)
    emitted = []
    for _ in range(3):  # an epoch's end: its train point, then validation metrics, confusion, samples
        emitted.append(time.monotonic())
        reporter.emit("metric", {"step": 1})
        time.sleep(0.1)
    deadline = time.monotonic() + 3
    while len(log.flushes) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    reporter.close()
    assert len(log.flushes) >= 3, log.flushes
    delays = [flushed - sent for (flushed, _), sent in zip(log.flushes, emitted)]
    assert all(d < 0.5 for d in delays), delays
