"""The sweep's verbs: create, advance, cancel, promote the best trial.

A sweep is `budget` ordinary jobs. `advance_sweep()` is the one place that moves a sweep: under
the sweep's row lock (SELECT ... FOR UPDATE; on SQLite the IMMEDIATE transaction holds the write
lock) it reads each running trial's newly stored validation epochs, records trials whose job
ended, asks the pruner about the others (a pruned trial's job is cancelled through the ordinary
cancel, so it stops at its next step), and submits new trials through `submit_job` while fewer
than `concurrency` of its trials' jobs are unfinished, so the user's limits, quotas and the fair
share of the dispatcher apply to them as to any job. Every move is conditional on the trial's
state, so an advance run twice (a job's end and the periodic pass at once) moves a trial once.

It runs when a trial's job stores a validation epoch or ends (webapp/jobs/signals.py, after the
events commit) and on the training workers' periodic pass (`advance_all`, beside the
dispatcher's in workers/adapters/registry.py), which catches up on anything a hook missed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from models_zoo.schema import ConfigError
from webapp.accounts import audit
from webapp.datasets.models import Dataset
from webapp.jobs import services as job_services
from webapp.jobs.models import Job, JobEvent
from webapp.sweeps import space as spaces
from webapp.sweeps import study
from webapp.sweeps.models import Sweep, Trial

log = logging.getLogger(__name__)

MAX_BUDGET = 500
MAX_CONCURRENCY = 32


@dataclass
class SweepError(Exception):
    errors: dict[str, str]
    status: int = 400

    def __str__(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in self.errors.items())


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def create_sweep(user, dataset: Dataset | None, architecture: str, space: dict, metric: str, *, budget: int = 20,
                 concurrency: int = 2, model_config: dict | None = None, train_config: dict | None = None,
                 seed: int = 0, pruner: str = Sweep.Pruner.MEDIAN, name: str = "", priority: int = 0,
                 project=None) -> Sweep:
    """Check the request (the base settings as a job's, the space against the settings'
    schema, the metric against the dataset's task) and start the sweep: its first trials are
    submitted at once."""
    errors: dict[str, str] = {}
    clean_model, clean_train = {}, {}
    try:
        job_services.check_project(user, project, dataset)
    except job_services.SubmitError as exc:
        raise SweepError(exc.errors, exc.status) from None
    try:
        clean_model, clean_train = job_services.validate_job_request(dataset, architecture, model_config, train_config)
    except job_services.SubmitError as exc:
        errors.update(exc.errors)
    clean_space = {}
    if "architecture" not in errors:
        try:
            clean_space = spaces.validate_space(architecture, space)
        except ConfigError as exc:
            errors.update(exc.errors)
        if clean_space and not errors:
            errors.update(spaces.never_applies(architecture, clean_space, clean_model, clean_train,
                                               job_services.job_context(dataset)))
    task = (dataset.info or {}).get("task") if dataset is not None and dataset.is_ready else None
    errors.update(spaces.check_metric(metric, task))
    if not _whole(budget, 1, MAX_BUDGET):
        errors["budget"] = f"give the number of trials, a whole number from 1 to {MAX_BUDGET}"
    if not _whole(concurrency, 1, MAX_CONCURRENCY):
        errors["concurrency"] = f"give how many trials may run at once, a whole number from 1 to {MAX_CONCURRENCY}"
    if not _whole(seed, 0, 2**31 - 1):
        errors["seed"] = "give a whole number from 0 to 2147483647"
    if pruner not in Sweep.Pruner.values:
        errors["pruner"] = f"choose one of {', '.join(Sweep.Pruner.values)}"
    if priority > 0 and not user.is_staff:
        errors["priority"] = "you may lower the trials' priority (0 or below); an admin may raise it"
    if errors:
        raise SweepError(errors)
    sweep = Sweep.objects.create(
        owner=user, project=project, dataset=dataset, architecture=architecture, base_model_config=clean_model,
        base_train_config=clean_train, space=clean_space, metric=metric, direction=spaces.direction_for(metric),
        budget=budget, concurrency=min(concurrency, budget), seed=seed, pruner=pruner, priority=priority,
        name=(name or "").strip()[:200] or f"sweep of {architecture} on {dataset.name}")
    audit.record(user, "sweep.create", sweep, architecture=architecture, dataset=str(dataset.pk))
    advance_sweep(sweep.pk)
    sweep.refresh_from_db()
    return sweep


# --- the advance ----------------------------------------------------------------------------------

def _trial_data(t: Trial) -> study.TrialData:
    return study.TrialData(number=t.number, state=t.state, params=t.params, value=t.value,
                           intermediate={int(k): v for k, v in t.intermediate_values.items()},
                           system_attrs=t.system_attrs)


def _read_epochs(sweep: Sweep, t: Trial) -> list[int]:
    """Take the trial job's validation epochs stored since the last read; the new epochs."""
    new = []
    rows = JobEvent.objects.filter(job_id=t.job_id, kind="metric", seq__gt=t.last_event_seq).order_by("seq")
    for seq, data in rows.values_list("seq", "data"):
        t.last_event_seq = seq
        value = (data.get("values") or {}).get(sweep.metric) if data.get("split") == "val" else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and data.get("epoch") is not None:
            epoch = int(round(data["epoch"]))
            if str(epoch) not in t.intermediate_values:  # a resumed run reports each epoch once; kept once anyway
                new.append(epoch)
            t.intermediate_values[str(epoch)] = float(value)
    return new


def _finish_trial(sweep: Sweep, t: Trial, job: Job | None) -> None:
    """The trial's job ended (or was deleted): its state, once."""
    now = timezone.now()
    if job is None:
        state, value, error = Trial.State.CANCELLED, None, "its job was deleted"
    elif job.status == Job.Status.SUCCEEDED:
        value = (job.metrics or {}).get(sweep.metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            state, error = Trial.State.COMPLETE, ""
        else:
            state, value, error = Trial.State.FAILED, None, f"the job reported no finite {sweep.metric}"
    elif job.status == Job.Status.FAILED:
        state, value, error = Trial.State.FAILED, None, job.error
    else:
        state, value, error = Trial.State.CANCELLED, None, job.error or "the job was cancelled"
    if Trial.objects.filter(pk=t.pk, state=Trial.State.RUNNING).update(
            state=state, value=value, error=error[:10_000], finished_at=now):
        t.state, t.value, t.error, t.finished_at = state, value, error, now


def _prune(sweep: Sweep, t: Trial, epoch: int) -> None:
    value = t.intermediate_values[str(epoch)]
    if not Trial.objects.filter(pk=t.pk, state=Trial.State.RUNNING).update(
            state=Trial.State.PRUNED, pruned_at_epoch=epoch, finished_at=timezone.now(),
            intermediate_values=t.intermediate_values, system_attrs=t.system_attrs, last_event_seq=t.last_event_seq):
        return
    t.state, t.pruned_at_epoch = Trial.State.PRUNED, epoch
    job_services.cancel_job(t.job, reason=(f"pruned by sweep “{sweep.name}”: validation {sweep.metric} "
                                           f"{value:.4g} after epoch {epoch} is not promising ({sweep.pruner} pruner)"))


def _submit_trial(sweep: Sweep, trials: list[Trial]) -> bool:
    """Ask the sampler for the next trial and submit its job; False when it must wait."""
    params = study.suggest(sweep.space, sweep.direction, [_trial_data(t) for t in trials],
                           seed=sweep.seed, budget=sweep.budget)
    number = len(trials)
    model, train = spaces.apply(sweep.base_model_config, sweep.base_train_config, params)
    try:
        # Lenient: a searched setting that does not apply with this trial's other values (momentum
        # when the trial's optimizer is Adam) is dropped, as it would do nothing.
        job = job_services.submit_job(sweep.owner, sweep.dataset, sweep.architecture, model, train,
                                      name=f"{sweep.name} · trial {number}"[:200], priority=sweep.priority,
                                      project=sweep.project, lenient=True)
    except job_services.SubmitError as exc:
        searched = {f"{'model_config' if k.startswith('model.') else 'train_config'}.{k.partition('.')[2]}"
                    for k in sweep.space}
        if exc.status == 400 and set(exc.errors) & searched:
            # These parameters make settings the job refuses (a cross-field rule): a failed trial.
            trials.append(Trial.objects.create(sweep=sweep, number=number, params=params, state=Trial.State.FAILED,
                                               error=str(exc)[:10_000], finished_at=timezone.now()))
            return True
        if exc.status == 400:  # not the parameters' fault (the dataset went away...): the sweep cannot go on
            _end_sweep(sweep, Sweep.Status.FAILED, error=f"trial {number} could not be submitted: {exc}")
            return False
        sweep.wait_reason = f"waiting to submit trial {number}: {exc}"[:255]  # the user's job limit, a quota
        return False
    trials.append(Trial.objects.create(sweep=sweep, number=number, job=job, params=params))
    sweep.wait_reason = ""
    return True


def _end_sweep(sweep: Sweep, status: str, error: str = "") -> None:
    sweep.status, sweep.error, sweep.finished_at = status, error[:10_000], timezone.now()


def _sync_trials(sweep: Sweep, trials: list[Trial]) -> dict[int, list[int]]:
    """Read the running trials' new validation epochs and record those whose job ended; the
    epochs the pruner may judge, by trial number."""
    fresh: dict[int, list[int]] = {}
    for t in trials:
        if t.state != Trial.State.RUNNING:
            continue
        if t.job is not None:
            # The last epoch is never judged: the run is over by then, stopping it saves nothing.
            last = (t.job.train_config or {}).get("epochs") or 0
            fresh[t.number] = [e for e in _read_epochs(sweep, t) if e < last]
        if t.job is None or t.job.is_final:
            _finish_trial(sweep, t, t.job)
        Trial.objects.filter(pk=t.pk).update(intermediate_values=t.intermediate_values,
                                             last_event_seq=t.last_event_seq)
    return fresh


def _prune_running(sweep: Sweep, trials: list[Trial], fresh: dict[int, list[int]]) -> None:
    if sweep.pruner == Sweep.Pruner.NONE:
        return
    data = [_trial_data(t) for t in trials]
    for t in trials:
        if t.state == Trial.State.RUNNING and fresh.get(t.number):
            epoch, t.system_attrs = study.prune_decision(sweep.space, sweep.direction, sweep.pruner, data,
                                                         t.number, fresh[t.number])
            Trial.objects.filter(pk=t.pk).update(system_attrs=t.system_attrs)
            if epoch is not None:
                _prune(sweep, t, epoch)
                data = [_trial_data(x) for x in trials]


def advance_sweep(sweep_id) -> None:
    """Move the sweep one step (see the module doc); safe to call at any time, from any process."""
    with transaction.atomic():
        # of=self: PostgreSQL cannot lock the nullable side of the dataset's outer join.
        sweep = (Sweep.objects.select_for_update(of=("self",)).select_related("owner", "dataset")
                 .filter(pk=sweep_id).first())
        if sweep is None or sweep.is_final:
            return
        before = (sweep.status, sweep.wait_reason)
        trials = list(sweep.trials.select_related("job").order_by("number"))
        _prune_running(sweep, trials, _sync_trials(sweep, trials))
        while sweep.status == Sweep.Status.RUNNING and len(trials) < sweep.budget:
            unfinished = sum(1 for t in trials if t.job is not None and not t.job.is_final)
            if unfinished >= sweep.concurrency or not _submit_trial(sweep, trials):
                break
        if sweep.status == Sweep.Status.RUNNING and len(trials) >= sweep.budget and \
                all(t.state != Trial.State.RUNNING and (t.job is None or t.job.is_final) for t in trials):
            _end_sweep(sweep, Sweep.Status.SUCCEEDED)
        if (sweep.status, sweep.wait_reason) != before:
            sweep.save(update_fields=["status", "error", "finished_at", "wait_reason"])


def advance_all() -> int:
    """The periodic pass: advance every running sweep; how many there were."""
    ids = list(Sweep.objects.filter(status=Sweep.Status.RUNNING).values_list("pk", flat=True))
    for pk in ids:
        try:
            advance_sweep(pk)
        except Exception:  # noqa: BLE001 - one sweep's trouble must not stop the others
            log.exception("advance of sweep %s failed", pk)
    return len(ids)


def on_job_progressed(sender, job_id, final: bool = False, **kwargs) -> None:
    """webapp/jobs/signals.job_progressed: a trial's job stored a validation epoch or ended."""
    sweep_id = Trial.objects.filter(job_id=job_id).values_list("sweep_id", flat=True).first()
    if sweep_id is not None:
        advance_sweep(sweep_id)


# --- the user's other verbs -----------------------------------------------------------------------

def cancel_sweep(sweep: Sweep, actor=None) -> Sweep:
    """Stop the sweep: no new trial, and its unfinished trials' jobs are cancelled (a running one
    stops at its next step)."""
    with transaction.atomic():
        sweep = Sweep.objects.select_for_update().get(pk=sweep.pk)
        if sweep.is_final:
            return sweep
        audit.record(actor, "sweep.cancel", sweep)
        _end_sweep(sweep, Sweep.Status.CANCELLED)
        sweep.wait_reason = ""
        sweep.save(update_fields=["status", "error", "finished_at", "wait_reason"])
        for t in sweep.trials.select_related("job").exclude(job=None):
            Trial.objects.filter(pk=t.pk, state=Trial.State.RUNNING).update(
                state=Trial.State.CANCELLED, error="the sweep was cancelled", finished_at=timezone.now())
            if not t.job.is_final:
                job_services.cancel_job(t.job, actor=actor, reason="its sweep was cancelled")
    sweep.refresh_from_db()
    return sweep


def promote_best(sweep: Sweep, user) -> Job:
    """A new ordinary job with the best complete trial's settings (the clone of its job)."""
    best = sweep.best_trial()
    if best is None:
        raise SweepError({"best": "no trial has completed yet"}, status=409)
    if best.job is not None:
        model, train = best.job.model_config, best.job.train_config
    else:
        model, train = spaces.apply(sweep.base_model_config, sweep.base_train_config, best.params)
    try:
        return job_services.submit_job(user, sweep.dataset, sweep.architecture, model, train,
                                       name=f"{sweep.name} · best (trial {best.number})"[:200],
                                       priority=min(sweep.priority, 0),
                                       project=sweep.project if job_services.may_create_in(user, sweep.project) else None)
    except job_services.SubmitError as exc:
        raise SweepError(exc.errors, exc.status) from None


def sweep_rows(sweep: Sweep) -> dict:
    """The sweep page's data: trials, the best-so-far curve, importances."""
    trials = list(sweep.trials.select_related("job"))
    best, curve = None, []
    sign = 1 if sweep.direction == "minimize" else -1
    for t in trials:
        if t.state == Trial.State.COMPLETE and t.value is not None and (best is None or sign * t.value < sign * best):
            best = t.value
        if t.state == Trial.State.COMPLETE and t.value is not None:
            curve.append({"number": t.number, "value": t.value, "best": best})
    imp = study.importances(sweep.space, sweep.direction, [_trial_data(t) for t in trials])
    return {"sweep": sweep.to_dict(), "curve": curve,
            "importances": imp if isinstance(imp, dict) else None,
            "importances_note": imp if isinstance(imp, str) else ""}
