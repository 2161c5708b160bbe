"""Every change of a job's state goes through these verbs; each also tells the browsers."""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

import models_zoo
from models_zoo import hf
from models_zoo._checks import kind_error
from models_zoo.hparams import TrainConfig
from models_zoo.schema import ConfigError, to_json, validate
from webapp import celery
from webapp.accounts import audit
from webapp.datasets.models import Dataset
from webapp.jobs import dispatch
from webapp.jobs.events import append_events
from webapp.jobs.models import Artifact, Job

log = logging.getLogger(__name__)


@dataclass
class SubmitError(Exception):
    errors: dict[str, str]
    status: int = 400

    def __str__(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in self.errors.items())


def validate_job_request(dataset: Dataset | None, architecture: str, model_config: dict | None,
                         train_config: dict | None) -> tuple[dict, dict]:
    """Check a job request the same way for the form and the API; returns clean JSON configs."""
    errors: dict[str, str] = {}
    if dataset is None:
        errors["dataset"] = "choose a dataset"
    elif not dataset.is_ready:
        errors["dataset"] = f"dataset {dataset.name!r} is {dataset.status}, not ready"
    clean_model, clean_train = {}, {}
    try:
        entry = models_zoo.get(architecture)
    except ConfigError as exc:
        errors.update(exc.errors)
        entry = None
    if entry is not None:
        if dataset is not None:
            errors.update(kind_error({"kind": dataset.kind}, entry.kinds, entry.label))
        try:
            config = entry.validate(model_config)
            clean_model = to_json(config)
        except ConfigError as exc:
            errors.update({f"model_config.{k}": v for k, v in exc.errors.items()})
        else:
            if dataset is not None and dataset.is_ready and "architecture" not in errors:
                # The family's dataset-dependent rules: heads dividing the width, images large
                # enough for the pooling, a first layer that fits... checked before queueing.
                for k, v in models_zoo.check_for_dataset(architecture, config, dataset.info).items():
                    errors[k if k == "architecture" else f"model_config.{k}"] = v
    try:
        tc = validate(TrainConfig, train_config)
        clean_train = to_json(tc)
        if dataset is not None and dataset.is_ready:
            errors.update({f"train_config.{k}": v for k, v in tc.check_for_task(dataset.info["task"]).items()})
        if hf.is_hf(architecture):  # settings transformers.Trainer does not honour
            errors.update({f"train_config.{k}": v for k, v in hf.train_errors(tc).items()})
    except ConfigError as exc:
        errors.update({f"train_config.{k}": v for k, v in exc.errors.items()})
    if errors:
        raise SubmitError(errors)
    return clean_model, clean_train


def submit_job(user, dataset: Dataset | None, architecture: str, model_config: dict | None = None,
               train_config: dict | None = None, name: str = "", priority: int = 0,
               min_gpu_memory_gb: int | None = None, gpu_type: str = "") -> Job:
    clean_model, clean_train = validate_job_request(dataset, architecture, model_config, train_config)
    sched_errors = {}
    if priority > 0 and not user.is_staff:
        sched_errors["priority"] = "you may lower your job's priority (0 or below); an admin may raise it"
    elif not -100 <= priority <= 100:
        sched_errors["priority"] = "priority must be between -100 and 100"
    if min_gpu_memory_gb is not None and not 1 <= min_gpu_memory_gb <= 4096:
        sched_errors["min_gpu_memory_gb"] = "give a whole number of GB between 1 and 4096, or leave it empty"
    gpu_type = (gpu_type or "").strip()
    if len(gpu_type) > 100:
        sched_errors["gpu_type"] = "at most 100 characters"
    if sched_errors:
        raise SubmitError(sched_errors)
    if hf.is_hf(architecture):  # a local:<name> model must exist for this user and fit the task
        from webapp.hub.services import check_job_model

        if errors := check_job_model(user, architecture, clean_model):
            raise SubmitError(errors)
    active = Job.objects.filter(owner=user, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).count()
    limit = dispatch.queued_limit(user)
    if active >= limit:
        raise SubmitError({"jobs": f"you have {active} queued or running jobs, the limit is {limit}; "
                                   "wait for some to finish or cancel them"}, status=429)
    name = (name or "").strip()[:200] or f"{architecture} on {dataset.name}"
    with transaction.atomic():
        job = Job.objects.create(owner=user, dataset=dataset, name=name, architecture=architecture,
                                 model_config=clean_model, train_config=clean_train, priority=priority,
                                 min_gpu_memory_gb=min_gpu_memory_gb or None, gpu_type=gpu_type)
        append_events(job.pk, [("status", {"status": Job.Status.QUEUED})])
        audit.record(user, "job.submit", job, architecture=architecture, dataset=str(dataset.pk))
        dispatch.dispatch_soon()  # released to a worker when one is free (webapp/jobs/dispatch.py)
    return job


def enqueue(job_id, queue: str | None = None) -> None:
    """Send the training task (the dispatcher calls this after its pass commits). If the broker
    cannot be reached (Redis restarting), the job stays queued and undispatched, with that
    reason: the next dispatcher pass (every worker heartbeat) sends it again. A queued job is
    never failed for a broker outage."""
    try:
        celery.send(celery.TRAIN_TASK, str(job_id), queue=queue)
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds of connection errors
        log.warning("could not send job %s to the queue: %s", job_id, exc)
        reason = f"the job queue (Redis) could not be reached ({exc}); it is sent again when Redis answers"
        Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
            dispatched_at=None, worker_name="", wait_reason=reason[:255])


def release_dispatch(job_id) -> None:
    """A worker got a job it will not run (drained since, or its GPUs do not fit): the job goes
    back to the dispatcher, which picks a worker again."""
    Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(dispatched_at=None, worker_name="")
    dispatch.dispatch_soon()


def cancel_job(job: Job, actor=None) -> Job:
    """A queued job is cancelled at once; a running one is asked to stop at a step boundary."""
    now = timezone.now()
    with transaction.atomic():
        if not job.is_final:
            audit.record(actor, "job.cancel", job)
        if Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
            status=Job.Status.CANCELLED, cancel_requested=True, finished_at=now
        ):
            append_events(job.pk, [("status", {"status": Job.Status.CANCELLED})])
        elif Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, cancel_requested=False).update(
            cancel_requested=True
        ):
            append_events(job.pk, [("log", {"level": "info", "text": "cancel requested"})])
        dispatch.dispatch_soon()
    job.refresh_from_db()
    return job


def claim_job(job_id, worker_name: str) -> Job | None:
    """Take a job for this worker, atomically; None when it is not this worker's to run.

    Claimable: a queued job; a running job that this same worker was running (its previous
    process died and Celery redelivered the message; a worker runs one job at a time); a
    running job whose lease expired. A job that has used up its attempts fails with the reason.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.TRAINYARD_JOB_LEASE_SECONDS)
    claimable = (
        Q(status=Job.Status.QUEUED)
        | Q(status=Job.Status.RUNNING, worker_name=worker_name)
        | Q(status=Job.Status.RUNNING, heartbeat_at__lt=stale)
    )
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(claimable, pk=job_id).first()
        if job is None:
            return None
        if job.cancel_requested:
            _finish_in_transaction(job_id, Job.Status.CANCELLED, error="", metrics=None, rows=[])
            return None
        if job.attempts >= settings.TRAINYARD_MAX_ATTEMPTS:
            _finish_in_transaction(job_id, Job.Status.FAILED, metrics=None, rows=[], error=(
                f"gave up after {_attempts(job.attempts)}: the worker running it was lost each time "
                f"(limit TRAINYARD_MAX_ATTEMPTS={settings.TRAINYARD_MAX_ATTEMPTS})"))
            return None
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.RUNNING, worker_name=worker_name, attempts=F("attempts") + 1,
            dispatched_at=None, wait_reason="", requeue_requested=False,
            started_at=job.started_at or now, heartbeat_at=now,
        )
        append_events(job_id, [("status", {"status": Job.Status.RUNNING, "worker": worker_name,
                                           "attempt": job.attempts + 1})])
    return Job.objects.select_related("dataset").get(pk=job_id)


def _attempts(n: int) -> str:
    return f"{n} attempt" + ("" if n == 1 else "s")


def requeue_lost_jobs() -> list:
    """Running jobs whose worker stopped writing (killed, machine down) go back to the queue.

    Safe to call from every worker at once: each job moves with a conditional UPDATE.
    """
    stale = timezone.now() - timedelta(seconds=settings.TRAINYARD_JOB_LEASE_SECONDS)
    requeued = []
    lapsed = Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=stale)
    for job_id, worker, attempts in lapsed.values_list("pk", "worker_name", "attempts"):
        who = worker or "unknown"
        with transaction.atomic():
            if attempts >= settings.TRAINYARD_MAX_ATTEMPTS:  # out of restarts: failed, with the reason
                if lapsed.filter(pk=job_id).update(status=Job.Status.FAILED):  # taken by this watchdog
                    append_events(job_id, [("log", {"level": "error", "text": (
                        f"worker {who} stopped responding; out of attempts, job failed")})])
                    _finish_in_transaction(job_id, Job.Status.FAILED, metrics=None, rows=[], lost=who, error=(
                        f"worker {who} stopped responding while running this job; "
                        f"{_attempts(attempts)} used, the limit (TRAINYARD_MAX_ATTEMPTS) is "
                        f"{settings.TRAINYARD_MAX_ATTEMPTS}, so it was not restarted"))
                continue
            if not lapsed.filter(pk=job_id).update(
                status=Job.Status.QUEUED, heartbeat_at=timezone.now(), dispatched_at=None
            ):
                continue
            append_events(job_id, [
                ("log", {"level": "warning", "text": f"worker {worker} stopped responding; job requeued"}),
                ("status", {"status": Job.Status.QUEUED, "lost": who}),  # marked lost
            ])
            dispatch.dispatch_soon()
        requeued.append(job_id)
    return requeued


def request_requeue_of_running(worker_name: str) -> int:
    """A worker is shutting down (SIGTERM, warm shutdown): ask its running job to stop at the
    next step; the task then hands it back to the queue (requeue_stopped_job)."""
    return Job.objects.filter(worker_name=worker_name, status=Job.Status.RUNNING).update(requeue_requested=True)


def requeue_stopped_job(job_id, worker_name: str) -> bool:
    """Put a job its worker stopped on purpose (shutdown, drain) back in the queue. The run does
    not count as an attempt (nothing failed); the next one resumes from the last checkpoint."""
    with transaction.atomic():
        if not Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, worker_name=worker_name).update(
            status=Job.Status.QUEUED, requeue_requested=False, dispatched_at=None,
            attempts=F("attempts") - 1, heartbeat_at=timezone.now(),
        ):
            return False
        append_events(job_id, [
            ("log", {"level": "warning", "text": f"worker {worker_name} is shutting down; job requeued, "
                                                 "it resumes from its last checkpoint"}),
            ("status", {"status": Job.Status.QUEUED}),
        ])
        dispatch.dispatch_soon()
    return True


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def finish_job(job_id, status: str, *, error: str = "", metrics: dict | None = None,
               artifacts: list[str] = ()) -> None:
    """Record the end of a run: final status, metrics, artifacts (with sha256), one status event."""
    directory = Job(pk=job_id).directory / "artifacts"
    rows = []
    for name in artifacts:
        path = directory / name
        rows.append(Artifact(job_id=job_id, name=name, size_bytes=path.stat().st_size, sha256=file_sha256(path)))
    with transaction.atomic():
        _finish_in_transaction(job_id, status, error=error, metrics=metrics, rows=rows)


def add_artifacts(job_id, names: list[str]) -> None:
    """Register files written later into a finished job's artifacts dir (e.g. model.onnx),
    replacing rows of the same names; call inside the caller's transaction."""
    directory = Job(pk=job_id).directory / "artifacts"
    Artifact.objects.filter(job_id=job_id, name__in=names).delete()
    Artifact.objects.bulk_create([Artifact(job_id=job_id, name=n, size_bytes=(directory / n).stat().st_size,
                                           sha256=file_sha256(directory / n)) for n in names])


def _finish_in_transaction(job_id, status: str, *, error: str, metrics: dict | None, rows: list,
                           lost: str = "") -> None:
    Artifact.objects.filter(job_id=job_id).delete()
    Artifact.objects.bulk_create(rows)
    updates = {"status": status, "error": error[:10_000], "finished_at": timezone.now(), "eta_seconds": None}
    if metrics:
        updates["metrics"] = dict(metrics)
    event = {"status": status}
    if error:
        event["error"] = error[:10_000]
    if lost:
        event["lost"] = lost  # the worker that was lost running it
    append_events(job_id, [("status", event)], **updates)
    # E-mail / webhook per the owner's settings, from a worker task (never this thread).
    from webapp.accounts.notifications import notify_job_end

    transaction.on_commit(lambda: notify_job_end(job_id, status))
    dispatch.dispatch_soon()  # a slot is free


def delete_job(job: Job, actor=None) -> bool:
    """Delete a finished job with its files; running or queued jobs must be cancelled first."""
    if not job.is_final:
        return False
    audit.record(actor, "job.delete", job)
    directory = job.directory
    job.delete()
    shutil.rmtree(directory, ignore_errors=True)
    return True
