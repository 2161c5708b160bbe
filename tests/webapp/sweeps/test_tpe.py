"""A seeded TPE sweep on a small generated table finds a better validation loss than the
default settings. No stack: each trial's job is claimed and trained here with the runtime's
own loop (workers.training.run), its validation epochs stored as the reporter stores them, so
the sweep advances (and prunes) through the same hooks as in production."""

from __future__ import annotations

import time

import pytest

from tests.datagen import table_csv
from webapp.datasets.models import Dataset
from webapp.jobs import lifecycle
from webapp.jobs.events import append_events
from webapp.jobs.models import Job
from webapp.jobs.services import submit_job
from webapp.sweeps.models import Sweep
from webapp.sweeps.services import create_sweep
from workers.datasets import ingest
from workers.training import TrainSpec, run
from workers.training.callbacks import Callback

BASE = {"epochs": 4, "batch_size": 32}  # the default learning rate (1e-3) underfits in 4 short epochs


class StoredEvents(Callback):
    """The reporter's part that matters here: validation metrics stored as events, the cancel
    flag read back (a pruned trial's job is cancelled and stops at its next step)."""

    def __init__(self, job_id):
        self.job_id = job_id

    def on_log(self, state, control, split, values):
        if split == "val":
            append_events(self.job_id, [("metric", {"split": "val", "step": state.step, "values": values,
                                                    "epoch": round(state.step / max(state.steps_per_epoch, 1), 4)})])

    def on_step_end(self, state, control):
        if Job.objects.filter(pk=self.job_id, cancel_requested=True).exists():
            control.request_stop("cancel")


def train(job: Job) -> Job:
    """What the worker's task does, minus Celery: claim, run, record the end."""
    assert lifecycle.claim_job(job.pk, "w@test") is not None
    spec = TrainSpec(job.architecture, job.model_config, job.train_config, dataset_dir=str(job.dataset.directory),
                     output_dir=str(job.directory), device="cpu")
    job.directory.mkdir(parents=True, exist_ok=True)
    result = run(spec, [StoredEvents(job.pk)])
    lifecycle.finish_job(job.pk, result.status, metrics=result.metrics, artifacts=result.artifacts)
    job.refresh_from_db()
    return job


@pytest.mark.django_db(transaction=True)  # the sweep's hooks run after real commits
def test_a_seeded_tpe_sweep_beats_the_default_settings(alice, tmp_path, sent_tasks):
    started = time.monotonic()
    ds = Dataset.objects.create(owner=alice, name="table", original_filename="t.csv", size_bytes=1,
                                status=Dataset.Status.INGESTING)
    info = ingest("tabular", table_csv(tmp_path / "t.csv", n=400, seed=0), ds.directory, {})
    Dataset.objects.filter(pk=ds.pk).update(status=Dataset.Status.READY, info=info)
    ds.refresh_from_db()

    baseline = train(submit_job(alice, ds, "mlp", {}, BASE, name="defaults"))
    assert baseline.status == "succeeded"

    space = {"train.learning_rate": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
             "model.activation": {"type": "choice", "choices": ["relu", "tanh", "gelu"]}}
    sweep = create_sweep(alice, ds, "mlp", space, "loss", budget=10, concurrency=2, train_config=BASE,
                         seed=0, pruner="median")
    trained = 0
    while (queued := list(Job.objects.filter(trial__sweep=sweep, status=Job.Status.QUEUED).order_by("trial__number"))):
        assert len(queued) <= 2  # never more than `concurrency` unfinished trials
        train(queued[0])
        trained += 1
    sweep.refresh_from_db()
    trials = list(sweep.trials.select_related("job"))
    assert sweep.status == Sweep.Status.SUCCEEDED and len(trials) == 10 and trained == 10
    assert {t.state for t in trials} <= {"complete", "pruned"}
    pruned = [t for t in trials if t.state == "pruned"]
    assert all(t.job.status == "cancelled" and t.pruned_at_epoch < BASE["epochs"] for t in pruned), [
        (t.number, t.job.status, t.pruned_at_epoch) for t in pruned]
    for t in pruned:  # stopped at its next step: no validation epoch after the one it was pruned at
        assert max(map(int, t.intermediate_values)) == t.pruned_at_epoch
    best = sweep.best_trial()
    assert best.value < 0.8 * baseline.metrics["loss"], (best.value, baseline.metrics["loss"])
    assert best.value == pytest.approx(best.job.metrics["loss"])
    # The startup trials are random but different, the later ones TPE's.
    assert len({t.params["train.learning_rate"] for t in trials}) == 10
    print(f"defaults: loss {baseline.metrics['loss']:.4f}; sweep best: {best.value:.4f} (trial {best.number}, "
          f"{best.params}); pruned {len(pruned)}/10; {time.monotonic() - started:.1f} s")
