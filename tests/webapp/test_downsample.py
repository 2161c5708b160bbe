"""The history downsampler (LTTB per metric series) and the events API's history mode."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from rest_framework.test import APIClient

from tests.webapp.factories import ready_dataset
from webapp.jobs.downsample import lttb, select_metric_events
from webapp.jobs.events import append_events
from webapp.jobs.models import Job, JobEvent


# -- lttb ---------------------------------------------------------------------------------------
def test_lttb_returns_everything_when_under_the_threshold():
    assert lttb([0, 1, 2], [5, 6, 7], 10).tolist() == [0, 1, 2]
    assert lttb([], [], 10).tolist() == []


def test_lttb_keeps_ends_count_and_order():
    x = np.arange(10_000)
    y = np.sin(x / 300)
    idx = lttb(x, y, 500)
    assert idx[0] == 0 and idx[-1] == 9_999
    assert len(idx) <= 500 and len(idx) >= 490
    assert np.all(np.diff(idx) > 0)


def test_lttb_keeps_spikes_that_every_nth_sampling_loses():
    x = np.arange(100_000)
    y = np.zeros(100_000)
    spikes = [12_345, 55_555, 87_001]
    y[spikes] = [10.0, -7.0, 4.0]
    idx = set(lttb(x, y, 300).tolist())
    assert all(s in idx for s in spikes)
    assert not all(s in set(range(0, 100_000, 334)) for s in spikes)  # a stride would miss them


def test_lttb_follows_the_shape():
    x = np.arange(50_000, dtype=float)
    y = np.sqrt(x) + np.random.default_rng(0).normal(0, 0.1, len(x))
    idx = lttb(x, y, 400)
    # Interpolating the kept points reproduces the series closely.
    approx = np.interp(x, x[idx], y[idx])
    assert np.abs(approx - y).mean() < 0.2


def test_lttb_with_tiny_thresholds():
    assert lttb(range(10), range(10), 2).tolist() == [0, 9]
    assert lttb(range(10), range(10), 3).tolist()[0] == 0


# -- select_metric_events -------------------------------------------------------------------------
def _rows(n, split="train", start_seq=1, keys=("loss", "lr")):
    rows = []
    for i in range(n):
        values = {k: math.sin(i / 50 + j) + (j * 3) for j, k in enumerate(keys)}
        rows.append((start_seq + i, {"split": split, "step": i + 1, "values": values}))
    return rows


def test_small_splits_are_kept_whole():
    rows = _rows(50) + _rows(10, split="val", start_seq=51)
    seqs, down = select_metric_events(rows, 100)
    assert seqs == list(range(1, 61)) and down is False


def test_each_series_keeps_at_most_points_and_small_splits_stay_exact():
    rows = _rows(20_000) + _rows(40, split="val", start_seq=20_001, keys=("loss", "accuracy"))
    seqs, down = select_metric_events(rows, 500)
    assert down is True
    assert set(range(20_001, 20_041)) <= set(seqs)  # every validation point
    train = [s for s in seqs if s <= 20_000]
    assert 500 <= len(train) <= 2 * 500  # union of two LTTB selections
    assert train[0] == 1 and train[-1] == 20_000


def test_non_numeric_and_missing_values_are_ignored():
    rows = [(i, {"split": "train", "step": i, "values": {"loss": float("nan") if i % 2 else 1.0, "note": "x"}})
            for i in range(1, 3001)]
    seqs, down = select_metric_events(rows, 100)
    assert down and all(s % 2 == 0 for s in seqs) and len(seqs) <= 100


# -- the API -----------------------------------------------------------------------------------
def _job(owner, status=Job.Status.SUCCEEDED):
    ds = ready_dataset(owner)
    return Job.objects.create(owner=owner, dataset=ds, name="long", architecture="mlp", status=status,
                              train_config={"epochs": 100})


def _bulk_metric_events(job, n):
    """n train-loss events plus one val event per 2000 steps, written in bulk like the reporter."""
    rows, seq = [], 0
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.05, n)
    for i in range(n):
        seq += 1
        rows.append(JobEvent(job=job, seq=seq, kind="metric", data={
            "split": "train", "step": i + 1, "epoch": round((i + 1) / 2000, 4),
            "values": {"loss": float(2.0 / math.sqrt(i + 1) + noise[i]), "lr": 1e-3 * (1 - i / n),
                       "samples_per_s": 1000.0 + (i % 100)}}))
        if (i + 1) % 2000 == 0:
            seq += 1
            rows.append(JobEvent(job=job, seq=seq, kind="metric", data={
                "split": "val", "step": i + 1, "epoch": (i + 1) // 2000, "values": {"loss": 1.0, "accuracy": 0.5}}))
            seq += 1
            rows.append(JobEvent(job=job, seq=seq, kind="samples", data={"epoch": (i + 1) // 2000, "items": []}))
        if (i + 1) % 500 == 0:
            seq += 1
            rows.append(JobEvent(job=job, seq=seq, kind="progress", data={"step": i + 1, "total_steps": n}))
    JobEvent.objects.bulk_create(rows, batch_size=5000)
    Job.objects.filter(pk=job.pk).update(last_seq=seq)
    return seq


@pytest.mark.django_db
def test_events_history_with_200k_points_is_downsampled(alice):
    job = _job(alice)
    n = 200_000
    last = _bulk_metric_events(job, n)
    append_events(job.pk, [("log", {"level": "info", "text": "done"}), ("status", {"status": "succeeded"})])
    c = APIClient()
    c.force_login(alice)
    started = time.perf_counter()
    r = c.get(f"/api/jobs/{job.pk}/events/?history=1&points=1000")
    elapsed = time.perf_counter() - started
    assert r.status_code == 200
    body = r.json()
    print(f"history of {n} metric points: {len(body['events'])} events, {len(r.content) / 1e3:.0f} kB "
          f"in {elapsed:.2f} s")
    assert body["last_seq"] == last + 2 and body["downsampled"] is True
    assert body["metric_events"] == n + n // 2000
    events = body["events"]
    train = [e for e in events if e["kind"] == "metric" and e["split"] == "train"]
    val = [e for e in events if e["kind"] == "metric" and e["split"] == "val"]
    assert 1000 <= len(train) <= 3 * 1000  # three series of at most 1000 points each
    assert len(val) == n // 2000  # small series stay exact
    assert train[0]["step"] == 1 and train[-1]["step"] == n
    assert [e["kind"] for e in events].count("samples") == 1 and [e["kind"] for e in events].count("progress") == 1
    assert events[-1]["kind"] == "status" and events[-2]["text"] == "done"
    assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})  # real numbers, ordered, unique
    assert body["omitted"]["metric"] == body["metric_events"] - len(train) - len(val)
    assert len(r.content) < 1_500_000  # a few thousand points, not 200k

    # The live tail after the snapshot is exact: every event numbered above last_seq.
    append_events(job.pk, [("metric", {"split": "train", "step": n + i, "values": {"loss": 0.1}}) for i in range(1, 4)])
    tail = c.get(f"/api/jobs/{job.pk}/events/?after={body['last_seq']}").json()["events"]
    assert [e["seq"] for e in tail] == [last + 3, last + 4, last + 5]


@pytest.mark.django_db
def test_events_history_of_a_small_job_is_exact(alice, bob):
    job = _job(alice, status=Job.Status.RUNNING)
    append_events(job.pk, [("metric", {"split": "train", "step": i, "values": {"loss": 1 / i}}) for i in range(1, 51)])
    append_events(job.pk, [("log", {"level": "stdout", "text": f"line {i}"}) for i in range(3)])
    c = APIClient()
    c.force_login(alice)
    body = c.get(f"/api/jobs/{job.pk}/events/?history=1").json()
    assert body["downsampled"] is False and body["omitted"] == {}
    assert [e["seq"] for e in body["events"]] == list(range(1, 54))
    assert body["events"] == c.get(f"/api/jobs/{job.pk}/events/?after=0").json()["events"]
    assert c.get(f"/api/jobs/{job.pk}/events/?history=1&points=x").status_code == 400
    c.force_login(bob)
    assert c.get(f"/api/jobs/{job.pk}/events/?history=1").status_code == 404
