"""Optuna, rebuilt in memory from the sweep's rows on every advance.

The rows (webapp/sweeps/models.py Trial) are the one record: each advance makes an in-memory
study, adds every trial with its state, parameters, value, intermediate values and the pruner's
system attributes, asks the sampler for the next parameters or the pruner for a decision, and
forgets the study. Optuna's RDB storage was the alternative; it was not taken because it keeps
a second record of the same trials in its own tables (its own schema migrations, its own
connections beside Django's, its own idea of a trial's state), which would have to be kept in
step with the job rows under the same lock anyway. Rebuilding costs milliseconds for hundreds of
trials and behaves the same on SQLite and PostgreSQL.

The sampler is seeded per trial (`seed`, trial number): a study rebuilt from the same rows asks
for the same parameters, and the random start-up trials still differ from one another.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)

PRUNERS = [("median", "Median (stop a trial worse than the median of finished ones at the same epoch)"),
           ("halving", "Successive halving (keep the best third at epochs 1, 3, 9, …)"),
           ("none", "None (every trial runs all its epochs)")]
MEDIAN_STARTUP_TRIALS = 2  # finished trials before the median pruner judges anyone
MEDIAN_FIRST_EPOCH = 2  # the first epoch at which the median pruner judges a trial (epoch 1 is free)

STATES = {"running": TrialState.RUNNING, "complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED,
          "failed": TrialState.FAIL, "cancelled": TrialState.FAIL}


@dataclass
class TrialData:
    """What Optuna needs of one trial (a Trial row, or a synthetic one in tests)."""

    number: int
    state: str  # a key of STATES
    params: dict
    value: float | None = None
    intermediate: dict[int, float] = field(default_factory=dict)  # epoch -> validation metric
    system_attrs: dict = field(default_factory=dict)  # the pruner's own notes (successive halving rungs)


def _encode(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, list) else v  # Optuna's choices are scalars


def distributions(space: dict) -> dict:
    out = {}
    for key, spec in space.items():
        if spec["type"] == "choice":
            out[key] = CategoricalDistribution([_encode(c) for c in spec["choices"]])
        elif spec["type"] == "int":
            out[key] = IntDistribution(spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step", 1))
        else:
            out[key] = FloatDistribution(spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step"))
    return out


def _decode(space: dict, params: dict) -> dict:
    out = {}
    for key, v in params.items():
        if space.get(key, {}).get("type") == "choice" and isinstance(v, str) and v.startswith("["):
            v = json.loads(v)
        out[key] = v
    return out


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=MEDIAN_FIRST_EPOCH)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def startup_trials(budget: int) -> int:
    """Random trials before TPE models the results: a quarter of the budget, 2 to 10."""
    return max(2, min(10, budget // 4))


def build(space: dict, direction: str, trials: list[TrialData], *, seed: int = 0, number: int = 0,
          budget: int = 20, pruner: str = "none") -> tuple[optuna.Study, dict[int, int]]:
    """The in-memory study of these trials, and each trial's Optuna id by its number (Optuna
    numbers the trials it is given in order; ours may have gaps in a test)."""
    sampler = optuna.samplers.TPESampler(seed=(seed * 1_000_003 + number) % 2**32,
                                         n_startup_trials=startup_trials(budget), constant_liar=True)
    study = optuna.create_study(direction=direction, sampler=sampler, pruner=make_pruner(pruner))
    dists = distributions(space)
    ids: dict[int, int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in sorted(trials, key=lambda t: t.number):
            state = STATES[t.state]
            params = {k: _encode(v) for k, v in t.params.items() if k in dists}
            if set(params) != set(dists):
                continue  # a trial of another space (cannot happen: the space is fixed at creation)
            study.add_trial(create_trial(
                state=state, value=t.value if state == TrialState.COMPLETE else None, params=params,
                distributions={k: dists[k] for k in params}, system_attrs=dict(t.system_attrs),
                intermediate_values={int(k): float(v) for k, v in t.intermediate.items()}))
            ids[t.number] = study.get_trials(deepcopy=False)[-1]._trial_id
    return study, ids


def suggest(space: dict, direction: str, trials: list[TrialData], *, seed: int, budget: int) -> dict:
    """The next trial's parameters given every trial so far (running ones included: the TPE's
    constant liar keeps concurrent trials apart)."""
    number = len(trials)
    study, _ = build(space, direction, trials, seed=seed, number=number, budget=budget)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trial = study.ask(distributions(space))
    return _decode(space, trial.params)


def prune_decision(space: dict, direction: str, pruner: str, trials: list[TrialData], number: int,
                   new_epochs: list[int]) -> tuple[int | None, dict]:
    """Ask the pruner about trial `number` after each of its newly stored epochs, in order, as
    Optuna's own loop would (`trial.report(value, epoch); trial.should_prune()`): the first
    epoch at which it says prune (None: keep going) and the trial's system attributes after
    the questions (successive halving records its rungs there; they are stored on the row)."""
    if pruner == "none" or not new_epochs:
        current = next(t for t in trials if t.number == number)
        return None, dict(current.system_attrs)
    current = next(t for t in trials if t.number == number)
    known = {e: v for e, v in current.intermediate.items() if e not in new_epochs}
    others = [t for t in trials if t.number != number]
    me = TrialData(number, "running", current.params, None, known, dict(current.system_attrs))
    study, ids = build(space, direction, [*others, me], pruner=pruner)
    frozen_id = ids[number]
    storage = study._storage
    for epoch in sorted(new_epochs):
        storage.set_trial_intermediate_value(frozen_id, epoch, float(current.intermediate[epoch]))
        if study.pruner.prune(study, storage.get_trial(frozen_id)):
            return epoch, dict(storage.get_trial(frozen_id).system_attrs)
    return None, dict(storage.get_trial(frozen_id).system_attrs)


def importances(space: dict, direction: str, trials: list[TrialData]) -> dict[str, float] | str:
    """Optuna's parameter importances (fANOVA), or the reason there are none yet."""
    done = [t for t in trials if t.state == "complete" and t.value is not None]
    if len(done) < 3:
        return f"parameter importances need at least 3 complete trials; this sweep has {len(done)}"
    if len(space) < 2:
        return "parameter importances compare two or more searched settings; this sweep searches one"
    study, _ = build(space, direction, done)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ImportError) as exc:
        return f"parameter importances could not be computed yet: {exc}"
