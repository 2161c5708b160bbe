"""Server-side pruning: exact decisions of the pruning function on synthetic curves, and the
advance that turns a decision into a cancel of the trial's job, once."""

from __future__ import annotations

import pytest

from tests.webapp.factories import ready_dataset
from webapp.jobs.events import append_events
from webapp.jobs.lifecycle import finish_job
from webapp.jobs.models import Job, JobEvent
from webapp.sweeps.models import Sweep, Trial
from webapp.sweeps.services import advance_sweep, create_sweep
from webapp.sweeps.study import TrialData, prune_decision

SPACE = {"train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}
LR = {"train.learning_rate": 0.01}


def done(number, curve, value=None):
    return TrialData(number, "complete", LR, value if value is not None else curve[max(curve)], curve)


def decide(trials, number, new, pruner="median", direction="minimize"):
    return prune_decision(SPACE, direction, pruner, trials, number, new)[0]


def test_median_pruner_decisions_on_a_synthetic_objective():
    finished = [done(0, {1: 1.0, 2: 0.8, 3: 0.6}), done(1, {1: 1.0, 2: 0.6, 3: 0.4})]  # medians 1.0, 0.7, 0.5
    run = lambda curve: TrialData(2, "running", LR, None, curve)  # noqa: E731
    assert decide([*finished, run({1: 5.0})], 2, [1]) is None  # epoch 1 is never judged
    assert decide([*finished, run({1: 2.0, 2: 0.75})], 2, [1, 2]) == 2  # 0.75 > median 0.7
    assert decide([*finished, run({1: 2.0, 2: 0.65})], 2, [2]) is None  # better than the median
    assert decide([*finished, run({1: 2.0, 2: 0.65, 3: 0.55})], 2, [3]) == 3  # best so far 0.55 > 0.5
    assert decide([*finished, run({1: 2.0, 2: 0.65, 3: 0.45})], 2, [3]) is None
    assert decide([finished[0], run({1: 2.0, 2: 9.0})], 2, [2]) is None  # one finished trial: too early to judge
    # All new epochs are asked about in order: the first one that fails stops the trial.
    assert decide([*finished, run({1: 2.0, 2: 0.9, 3: 0.1})], 2, [2, 3]) == 2
    assert decide([*finished, run({1: 2.0, 2: 0.75})], 2, [1, 2], pruner="none") is None
    # Maximising (accuracy): worse is lower.
    acc = [done(0, {1: 0.5, 2: 0.7}), done(1, {1: 0.5, 2: 0.9})]  # median at 2: 0.8
    assert decide([*acc, TrialData(2, "running", LR, None, {1: 0.4, 2: 0.75})], 2, [2], direction="maximize") == 2
    assert decide([*acc, TrialData(2, "running", LR, None, {1: 0.4, 2: 0.85})], 2, [2], direction="maximize") is None


def test_successive_halving_keeps_its_rungs_across_rebuilds():
    first, attrs = prune_decision(SPACE, "minimize", "halving", [TrialData(0, "running", LR, None, {1: 1.0})], 0, [1])
    assert first is None and attrs == {"completed_rung_0": 1.0}
    trials = [TrialData(0, "running", LR, None, {1: 1.0}, attrs), TrialData(1, "running", LR, None, {1: 2.0})]
    second, attrs1 = prune_decision(SPACE, "minimize", "halving", trials, 1, [1])
    assert second == 1 and attrs1 == {"completed_rung_0": 2.0}  # worse than the only rung-0 value: out
    trials[1] = TrialData(1, "running", LR, None, {1: 0.5})
    assert prune_decision(SPACE, "minimize", "halving", trials, 1, [1])[0] is None  # better: promoted
    # Without trial 0's stored rung, trial 1 would have nobody to lose to.
    bare = [TrialData(0, "running", LR, None, {1: 1.0}), TrialData(1, "running", LR, None, {1: 2.0})]
    assert prune_decision(SPACE, "minimize", "halving", bare, 1, [1])[0] is None


def _run(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, worker_name="w@h")


def _epochs(job: Job, losses: dict) -> None:
    for epoch, loss in losses.items():
        append_events(job.pk, [("metric", {"split": "val", "step": epoch * 10, "epoch": float(epoch),
                                           "values": {"loss": loss, "accuracy": 0.5}})])


@pytest.mark.django_db(transaction=True)  # the hooks run after real commits
def test_the_advance_prunes_from_stored_validation_events_once(alice, sent_tasks):
    sweep = create_sweep(alice, ready_dataset(alice), "mlp", SPACE, "loss", budget=4, concurrency=2,
                         train_config={"epochs": 3}, pruner="median", seed=1)
    trials = list(sweep.trials.select_related("job"))
    assert [t.number for t in trials] == [0, 1] and all(t.job.status == "queued" for t in trials)
    assert Job.objects.count() == 2  # through submit_job: queued jobs

    for t, curve in zip(trials, ({1: 1.0, 2: 0.8, 3: 0.6}, {1: 1.0, 2: 0.6, 3: 0.4})):
        _run(t.job)
        _epochs(t.job, curve)
        finish_job(t.job.pk, "succeeded", metrics={"loss": curve[3], "accuracy": 0.5})
    sweep.refresh_from_db()
    states = dict(sweep.trials.values_list("number", "state"))
    assert states == {0: "complete", 1: "complete", 2: "running", 3: "running"}
    assert sweep.trials.get(number=0).value == 0.6 and sweep.trials.get(number=1).intermediate_values == {
        "1": 1.0, "2": 0.6, "3": 0.4}

    t2 = sweep.trials.get(number=2)
    _run(t2.job)
    _epochs(t2.job, {1: 2.0})  # the hook advances the sweep: epoch 1 is not judged
    assert Trial.objects.get(pk=t2.pk).state == "running"
    _epochs(t2.job, {2: 0.75})
    t2.refresh_from_db()
    t2.job.refresh_from_db()
    assert t2.state == "pruned" and t2.pruned_at_epoch == 2 and t2.job.cancel_requested
    assert "pruned by sweep" in t2.job.error and "after epoch 2" in t2.job.error
    cancel_logs = JobEvent.objects.filter(job=t2.job, kind="log", data__text__startswith="cancel requested")
    advance_sweep(sweep.pk)
    advance_sweep(sweep.pk)
    assert cancel_logs.count() == 1  # asked to stop once
    # Still running until it stops at its next step: the slot is not free, no fifth trial either way.
    assert sweep.trials.count() == 4
    finish_job(t2.job.pk, "cancelled")
    t2.refresh_from_db()
    assert t2.state == "pruned" and t2.value is None

    t3 = sweep.trials.get(number=3)
    _run(t3.job)
    _epochs(t3.job, {1: 0.9, 2: 0.5, 3: 0.3})
    finish_job(t3.job.pk, "succeeded", metrics={"loss": 0.3})
    sweep.refresh_from_db()
    assert sweep.status == "succeeded" and sweep.best_trial().number == 3
    assert dict(sweep.trials.values_list("number", "state")) == {0: "complete", 1: "complete", 2: "pruned",
                                                                 3: "complete"}
    assert Job.objects.count() == 4
