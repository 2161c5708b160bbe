"""A job's run lifecycle: claim, release, requeue, finish, and the lost-job watchdog.

The Celery task (workers/adapters/tasks.py:train_job) crosses into the web tier through two
calls, besides its Reporter:
- `start_run(job_id, worker)`: the drain check, the fit check, the claim and the run's spec;
  a `RunStart` to train, or a `Skipped` with the reason the worker takes nothing;
- `end_run(start, status, ...)`: the job goes back to the queue (the worker stopped it for a
  shutdown) or ends with its status, metrics and artifacts.

Every move that may free a slot or queue a job asks the scheduler for a pass
(scheduler.dispatch_soon).

Ownership (docs/operations.md, "Job ownership"): each claim bumps the job's `owner_token`; every
write of the run (events, progress, heartbeat, checkpoint and artifact renames, finish, requeue)
is conditional on it, so a run that lost its lease writes nothing once it wakes. Lease expiry is
judged by the database's clock (`Now()` in the queries), never by a worker's own. The watchdog (`requeue_lost_jobs`) lives here, not in the scheduler,
because its moves are these same transitions and the scheduler imports nothing of this module.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q
from django.db.models.functions import Now
from django.utils import timezone

from models_zoo.hf import is_hf
from webapp.jobs import scheduler
from webapp.jobs.dbretry import retry_db
from webapp.jobs.events import Fenced, append_events, owned
from webapp.jobs.models import Artifact, Job, JobNode
from webapp.monitoring import recorder

log = logging.getLogger(__name__)

# --- the two calls of the training task ------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """The worker takes nothing: "drained", "does not fit" or "not claimed"."""

    reason: str


@dataclass(frozen=True)
class RunStart:
    """A claimed job and what its run needs (the fields of workers.training.TrainSpec)."""

    job_id: object
    worker: str
    architecture: str
    model_config: dict
    train_config: dict
    dataset_dir: str
    output_dir: str
    extra: dict = field(default_factory=dict)  # dataset_name (model card); model_path for hf_ jobs
    failure: Exception | None = None  # claimed but cannot run (dataset deleted): check() raises it
    token: int = 0  # the owner token of this run (Job.owner_token at the claim): its writes need it
    # A multi-node job (TrainConfig.nodes > 1): this machine's place in its gang (0: the leader,
    # which claimed the job) and, on the others, the leader's rendezvous endpoint.
    node_rank: int = 0
    endpoint: str = ""

    @property
    def is_hf(self) -> bool:
        """Hugging Face fine-tuning (workers.hf), not a zoo model (workers.training)."""
        return is_hf(self.architecture)

    def check(self) -> None:
        """Raise the reason this claimed job cannot run, inside the task's run, so it ends as a
        failed job with that error and its traceback in the log, like any failure of the run."""
        if self.failure is not None:
            raise self.failure


def start_run(job_id, worker_name: str) -> RunStart | Skipped:
    """Take the job for this worker, or say why not. A drained worker or one whose GPUs do
    not fit hands the job back to the dispatcher; a job cancelled, finished, out of attempts or
    running elsewhere is not claimed."""
    if scheduler.is_draining(worker_name):
        # Drained by an admin after this message was fetched: back to the dispatcher for
        # another worker (the heartbeat has stopped this worker's consumers); take nothing.
        release_dispatch(job_id, worker_name)
        return Skipped("drained")
    if not scheduler.worker_fits(worker_name, job_id):
        # A job needing a bigger / other GPU reached this worker (through the shared queue, from
        # an older dispatcher): back to the dispatcher, which sends it to a worker that fits.
        # The pause keeps a job from bouncing at full speed between workers that cannot run it.
        time.sleep(1)
        release_dispatch(job_id, worker_name)
        return Skipped("does not fit")
    job = claim_job(job_id, worker_name)
    if job is None:
        return Skipped("not claimed")
    scheduler.set_current_job(worker_name, job.pk)
    # The job's folder is made here, under the claim; the runtimes make only its subfolders, so
    # a stale run cannot re-create the folder of a job deleted meanwhile.
    job.directory.mkdir(parents=True, exist_ok=True)
    return _run_start(job, worker_name)


def _run_start(job: Job, worker_name: str, node_rank: int = 0, endpoint: str = "",
               token: int | None = None) -> RunStart:
    failure, dataset_dir, extra = None, "", {}
    try:
        if job.dataset is None:
            raise FileNotFoundError("the job's dataset was deleted")
        _check_still_allowed(job)
        dataset_dir = str(job.dataset.directory)
        extra["dataset_name"] = job.dataset.name  # for the model card
        if job.lineage:
            extra["lineage"] = job.lineage  # continued from another job's checkpoint (model card)
        if is_hf(job.architecture):
            from webapp.hub.services import local_path

            extra["model_path"] = local_path(job.owner, job.model_config.get("model", ""))
    except Exception as exc:  # noqa: BLE001 - the claimed job fails with it (RunStart.check)
        failure = exc
    return RunStart(job.pk, worker_name, job.architecture, job.model_config, job.train_config,
                    dataset_dir=dataset_dir, output_dir=str(job.directory), extra=extra, failure=failure,
                    token=job.owner_token if token is None else token, node_rank=node_rank, endpoint=endpoint)


def _check_still_allowed(job: Job) -> None:
    """A job submitted while its dataset was being unshared, or its owner deactivated, may
    have been created after those ended the owner's jobs (jobs/cancel.py): it does not run."""
    from webapp.jobs.access import datasets_for

    if not job.owner.is_active:
        raise PermissionError("the account was deactivated")
    if not datasets_for(job.owner).filter(pk=job.dataset_id).exists():
        raise PermissionError(f"the job's owner may no longer use dataset “{job.dataset.name}”: its owner stopped "
                              "sharing it, or they left the project it belongs to")


def end_run(start: RunStart, status: str | None, *, error: str = "", metrics: dict | None = None,
            artifacts: list[str] = (), requeue: bool = False, test_metrics: dict | None = None,
            warnings: list[dict] | None = None) -> str | None:
    """Record the end of a run; returns "requeued" or the final status.

    `requeue`: the worker stopped the run for its shutdown (the run ends "cancelled"). The job
    goes back to the queue then, unless its owner asked to cancel it meanwhile: a cancel wins.
    `status` None: the run was interrupted because this process is exiting; only the worker's
    slot is freed, and the job, still running, is requeued by the watchdog when its lease lapses.
    A run that no longer owns its job (fenced) writes nothing and gets "fenced".
    A dropped database connection is reconnected and the writes retried (retry_db): the end of a
    job is not lost to one broken connection.
    """
    return retry_db(_end_run, start, status, error=error, metrics=metrics, artifacts=artifacts, requeue=requeue,
                    test_metrics=test_metrics, warnings=warnings)


def _end_run(start: RunStart, status: str | None, *, error: str, metrics: dict | None,
             artifacts: list[str], requeue: bool, test_metrics: dict | None = None,
             warnings: list[dict] | None = None) -> str | None:
    scheduler.set_current_job(start.worker, None, only=start.job_id)
    if status is None:
        return None
    try:
        if requeue and status == Job.Status.CANCELLED and not Job.objects.filter(
                pk=start.job_id, cancel_requested=True).exists():
            if requeue_stopped_job(start.job_id, start.worker, token=start.token):
                return "requeued"
            raise Fenced(start.job_id, start.token)
        finish_job(start.job_id, status, error=error, metrics=metrics, artifacts=artifacts, token=start.token,
                   test_metrics=test_metrics, warnings=warnings)
    except Fenced as exc:
        log.warning("%s; its end (%s) is discarded", exc, status)
        return "fenced"
    return status


# --- transitions ---------------------------------------------------------------------------------

def lease_cutoff():
    """A running job whose worker last wrote (Reporter heartbeat) before this moment is lost:
    the watchdog requeues it and any worker may claim it. An SQL expression on the database's
    clock: the heartbeats are stamped with it too (`Now()`), so a worker whose clock runs ahead
    or behind judges no lease wrongly. (On SQLite the "database" is each process's own clock:
    one host, one clock.)"""
    return ExpressionWrapper(Now() - timedelta(seconds=settings.TRAINYARD_JOB_LEASE_SECONDS),
                             output_field=DateTimeField())


def claim_job(job_id, worker_name: str) -> Job | None:
    """Take a job for this worker, atomically; None when it is not this worker's to run.

    Claimable: a queued job; a running job that this same worker was running (its previous
    process died and Celery redelivered the message; a worker runs one job at a time); a
    running job whose lease expired. A job that has used up its attempts fails with the reason.
    A multi-node job is claimed only from the queue by its gang's leader (_leads_gang); one in
    one of the running cases above lost its run, and its gang with it: it is requeued instead
    (requeue_lost_run), so that the dispatcher places a fresh gang.
    """
    now = timezone.now()
    stale = lease_cutoff()
    claimable = (
        Q(status=Job.Status.QUEUED)
        | Q(status=Job.Status.RUNNING, worker_name=worker_name)
        | Q(status=Job.Status.RUNNING, heartbeat_at__lt=stale)
    )
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(claimable, pk=job_id).first()
        if job is not None and job.status == Job.Status.RUNNING and scheduler.nodes_needed(job) > 1:
            _requeue_lost_run(job, worker_name)
            return None
        if job is None or not _leads_gang(job, worker_name):
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
            owner_token=F("owner_token") + 1,  # fences every earlier run of this job
            dispatched_at=None, wait_reason="", requeue_requested=False,
            started_at=job.started_at or now, heartbeat_at=Now(),
        )
        append_events(job_id, [("status", {"status": Job.Status.RUNNING, "worker": worker_name,
                                           "attempt": job.attempts + 1})])
    if job.dispatched_at is not None:  # the dispatcher's clock to this worker's: a skew between them shows here
        recorder.observe(recorder.DISPATCH_LATENCY, max(0.0, (now - job.dispatched_at).total_seconds()))
    return Job.objects.select_related("dataset").get(pk=job_id)


def _leads_gang(job: Job, worker_name: str) -> bool:
    """A multi-node job is claimed only by the leader of the gang it was released to, and only
    from the queue (a stale message, from before the job was requeued or handed to another gang,
    claims nothing: a follower never runs alone, and no worker runs it without its gang; a
    running one is never claimed again: its followers' node tasks were sent once, for that run)."""
    if scheduler.nodes_needed(job) == 1:
        return True
    return job.worker_name == worker_name and job.status == Job.Status.QUEUED and job.dispatched_at is not None


def _requeue_lost_run(job: Job, worker_name: str) -> None:
    """A running multi-node job whose run is lost (its leader's message redelivered after the
    pool process died, or its lease expired), under the claim's row lock: the followers' node
    tasks were for that run, so claiming it again would wait for machines that never come.
    Back to the queue instead, the lost attempt counted once (at its claim), the gang dropped
    (the dispatcher places a fresh one); a cancelled one ends cancelled. The new owner token
    fences what is left of the old run: its followers stop their ranks and end."""
    if job.cancel_requested:
        _finish_in_transaction(job.pk, Job.Status.CANCELLED, error="", metrics=None, rows=[])
        return
    if job.attempts >= settings.TRAINYARD_MAX_ATTEMPTS:
        _finish_in_transaction(job.pk, Job.Status.FAILED, metrics=None, rows=[], lost=job.worker_name, error=(
            f"the run on worker {job.worker_name or 'unknown'} was lost; {_attempts(job.attempts)} used, the limit "
            f"(TRAINYARD_MAX_ATTEMPTS) is {settings.TRAINYARD_MAX_ATTEMPTS}, so it was not restarted"))
        return
    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED, owner_token=F("owner_token") + 1,
                                         heartbeat_at=Now(), dispatched_at=None, worker_name="")
    JobNode.objects.filter(job_id=job.pk).delete()
    transaction.on_commit(lambda: recorder.inc(recorder.JOBS_LOST))
    append_events(job.pk, [
        ("log", {"level": "warning", "text": (
            f"the run of this multi-node job on worker {job.worker_name or 'unknown'} was lost (its task came back "
            f"to worker {worker_name}); job requeued for a fresh set of machines, it resumes from its last checkpoint")}),
        ("status", {"status": Job.Status.QUEUED, "lost": job.worker_name or "unknown"}),
    ])
    scheduler.dispatch_soon()


def _attempts(n: int) -> str:
    return f"{n} attempt" + ("" if n == 1 else "s")


def release_dispatch(job_id, worker_name: str) -> None:
    """A worker got a job it will not run (drained since, or its GPUs do not fit): the job goes
    back to the dispatcher, which picks a worker again. Only while it is dispatched to this
    worker: a stale message must not undo a dispatch to another."""
    Job.objects.filter(pk=job_id, status=Job.Status.QUEUED, worker_name=worker_name).update(
        dispatched_at=None, worker_name="")
    scheduler.dispatch_soon()


def request_requeue_of_running(worker_name: str) -> int:
    """A worker is shutting down (SIGTERM, warm shutdown): ask its running job to stop at the
    next step; the task then hands it back to the queue (end_run → requeue_stopped_job)."""
    # The other machines of a multi-node job too: rank 0, on the leader, reads the flag and stops
    # every rank at the same step; the leader then hands the job back.
    running = Job.objects.filter(Q(worker_name=worker_name) | Q(gang__worker_name=worker_name), status=Job.Status.RUNNING)
    return Job.objects.filter(pk__in=list(running.values_list("pk", flat=True))).update(requeue_requested=True)


def _why_stopped(worker_name: str) -> str:
    """Why a worker stopped its run on purpose, as far as can be told afterwards: the task only
    knows it was asked to stop (SIGTERM). A drain is on the worker's row; a lost broker is
    probed (Celery stops running tasks when its connection to Redis drops); else a shutdown."""
    from webapp.cluster.models import Worker

    if Worker.objects.filter(name=worker_name, draining=True).exists():
        return "it is draining"
    try:
        import redis

        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1).ping()
    except Exception:  # noqa: BLE001 - any failure to answer is "lost"
        return "it lost its connection to the job queue (Redis)"
    return "it is shutting down"


def requeue_stopped_job(job_id, worker_name: str, token: int | None = None) -> bool:
    """Put a job its worker stopped on purpose (shutdown, drain) back in the queue. The run does
    not count as an attempt (nothing failed); the next one resumes from the last checkpoint.
    With `token`, only while that run still owns the job."""
    rows = Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, worker_name=worker_name)
    if token is not None:
        rows = rows.filter(owner_token=token)
    why = _why_stopped(worker_name)  # before the row lock: the probe may wait a second or two
    with transaction.atomic():
        if not rows.update(
            status=Job.Status.QUEUED, requeue_requested=False, dispatched_at=None, worker_name="",
            attempts=F("attempts") - 1, heartbeat_at=Now(),
        ):
            return False
        append_events(job_id, [
            ("log", {"level": "warning", "text": f"worker {worker_name} handed the job back to the queue "
                                                 f"({why}); it resumes from its last "
                                                 "checkpoint"}),
            ("status", {"status": Job.Status.QUEUED}),
        ])
        scheduler.dispatch_soon()
    return True


def touch_lease(job_id, token: int) -> bool:
    """Renew the run's lease (the job's heartbeat, on the database's clock) while it owns the job.
    The supervisor of a multi-device run calls it while its ranks start up and train, so that
    torchrun's start and the ranks' imports do not look like a lost worker."""
    return bool(owned(job_id, token).update(heartbeat_at=Now()))


# --- multi-node jobs: the gang's rendezvous ------------------------------------------------------

def publish_rendezvous(start: RunStart, endpoint: str) -> bool:
    """The leader's c10d rendezvous endpoint ("host:port") for this run, where the other machines
    of the gang read it (join_gang); False when the run no longer owns the job."""
    with transaction.atomic():
        if owned(start.job_id, start.token).select_for_update().first() is None:
            return False
        return bool(JobNode.objects.filter(job_id=start.job_id, node_rank=0).update(endpoint=endpoint, token=start.token))


RDZV_POLL_SECONDS = 0.5


def join_gang(job_id, worker_name: str, node_rank: int, gang: str) -> RunStart | Skipped:
    """Node `node_rank` (> 0) of a multi-node job: wait, at most TRAINYARD_RDZV_TIMEOUT_SECONDS,
    for the leader to claim the job and publish its endpoint, then take part in that run (the
    leader's owner token; this machine claims nothing). Skipped when this message is not the
    gang's any more (the job was requeued, handed to another gang, cancelled); and when the
    leader never started in time, the whole gang's reservation is released here (the job goes
    back to the dispatcher, its attempt not counted: it never ran)."""
    if scheduler.is_draining(worker_name):
        # Drained since the dispatch: the next pass drops this gang and places the job again
        # (scheduler._holds_of_dispatched); a leader that claimed it already meets no one here.
        scheduler.dispatch_soon()
        return Skipped("drained")
    deadline = time.monotonic() + settings.TRAINYARD_RDZV_TIMEOUT_SECONDS
    while True:
        row = JobNode.objects.filter(job_id=job_id, node_rank=node_rank, worker_name=worker_name,
                                     gang=gang).select_related("job").first()
        job = row.job if row else None
        if job is None or job.status not in (Job.Status.QUEUED, Job.Status.RUNNING) or (
                job.status == Job.Status.QUEUED and job.dispatched_at is None):
            return Skipped("not in the gang")
        if job.status == Job.Status.RUNNING:
            leader = JobNode.objects.filter(job_id=job_id, node_rank=0).values_list("endpoint", "token").first()
            if leader and leader[0] and leader[1] == job.owner_token:
                token = job.owner_token  # the one checked: a re-read could be a later run's
                if not JobNode.objects.filter(pk=row.pk).update(token=token):
                    return Skipped("not in the gang")
                scheduler.set_current_job(worker_name, job.pk)
                job = Job.objects.select_related("dataset").get(pk=job_id)
                return _run_start(job, worker_name, node_rank=node_rank, endpoint=leader[0], token=token)
        if time.monotonic() > deadline:
            _abandon_gang(job_id, gang, worker_name)
            return Skipped("rendezvous timed out")
        time.sleep(RDZV_POLL_SECONDS)


def _abandon_gang(job_id, gang: str, worker_name: str) -> None:
    """The leader did not take the job within the rendezvous timeout: release every machine of
    the gang (the job is dispatched again, to whatever gang is free). A leader that claimed it
    meanwhile records its own end (its torchrun's rendezvous times out too)."""
    with transaction.atomic():
        if Job.objects.filter(pk=job_id, status=Job.Status.QUEUED, dispatched_at__isnull=False,
                              gang__gang=gang).update(dispatched_at=None, worker_name=""):
            append_events(job_id, [("log", {"level": "warning", "text": (
                f"the leader of the job's machines did not start within TRAINYARD_RDZV_TIMEOUT_SECONDS="
                f"{settings.TRAINYARD_RDZV_TIMEOUT_SECONDS} s (worker {worker_name} waited for it); the job waits "
                "for machines again")})])
            scheduler.dispatch_soon()


def missing_nodes(start: RunStart) -> list[str]:
    """The machines of this run's gang that never joined it: "node 1 (worker w@h)"."""
    rows = JobNode.objects.filter(job_id=start.job_id, node_rank__gt=0).exclude(token=start.token)
    return [f"node {r} (worker {w})" for r, w in rows.values_list("node_rank", "worker_name")]


def cancel_requested(start: RunStart) -> bool:
    """Whether the job's owner asked to cancel the run holding this owner token (the leader's
    supervisor reads it while no rank runs yet, so none can: during the machines' rendezvous)."""
    return owned(start.job_id, start.token).filter(cancel_requested=True).exists()


def still_owned(start: RunStart) -> bool:
    """Whether the run holding this owner token still owns the job (running): the other machines
    of a multi-node job stop their ranks once it does not."""
    return owned(start.job_id, start.token).exists()


def leader_lost(start: RunStart) -> bool:
    """Whether the run's lease lapsed (the leader's supervisor renews it every second while its
    ranks live): the leader is gone, and no end will be recorded by it."""
    return owned(start.job_id, start.token).filter(heartbeat_at__lt=lease_cutoff()).exists()


def request_gang_requeue(start: RunStart) -> None:
    """A machine of a multi-node job is shutting down: rank 0 (on the leader) stops every rank at
    the next step and the leader hands the job back to the queue (its attempt not counted)."""
    owned(start.job_id, start.token).update(requeue_requested=True)


def requeue_lost_gang(start: RunStart, why: str) -> str | None:
    """A multi-device run lost a rank (killed, its GPU gone): the whole gang stopped, so the job
    goes back to the queue with this attempt counted, to resume from its last checkpoint; or,
    out of attempts, it fails with the reason; cancelled meanwhile (a cancel during the machines'
    rendezvous, before any rank could read it), it ends cancelled. Only while this run owns the
    job ("fenced" else)."""
    scheduler.set_current_job(start.worker, None, only=start.job_id)
    rows = owned(start.job_id, start.token)
    with transaction.atomic():
        row = rows.select_for_update().values_list("attempts", "cancel_requested").first()
        if row is None:
            return "fenced"
        attempts, cancelled = row
        if cancelled:
            _finish_in_transaction(start.job_id, Job.Status.CANCELLED, error="", metrics=None, rows=[],
                                   token=start.token)
            return Job.Status.CANCELLED
        if attempts >= settings.TRAINYARD_MAX_ATTEMPTS:
            _finish_in_transaction(start.job_id, Job.Status.FAILED, metrics=None, rows=[], lost=start.worker,
                                   token=start.token, error=(
                                       f"{why} on worker {start.worker}; {_attempts(attempts)} used, the limit "
                                       f"(TRAINYARD_MAX_ATTEMPTS) is {settings.TRAINYARD_MAX_ATTEMPTS}, so it was "
                                       "not restarted"))
            return Job.Status.FAILED
        rows.update(status=Job.Status.QUEUED, heartbeat_at=Now(), dispatched_at=None, worker_name="")
        transaction.on_commit(lambda: recorder.inc(recorder.JOBS_LOST))
        append_events(start.job_id, [
            ("log", {"level": "warning", "text": f"{why} on worker {start.worker}; job requeued, it resumes "
                                                 "from its last checkpoint"}),
            ("status", {"status": Job.Status.QUEUED, "lost": start.worker}),
        ])
        scheduler.dispatch_soon()
    return "requeued"


def requeue_lost_jobs() -> list:
    """The lost-job watchdog: running jobs whose worker stopped writing (killed, machine down)
    for TRAINYARD_JOB_LEASE_SECONDS go back to the queue, or fail once out of attempts.

    Run by the scheduler's periodic pass on the training workers only (workers/adapters/registry.py),
    on the database's clock. Safe from several at once: each job moves with a conditional UPDATE.
    """
    stale = lease_cutoff()
    requeued = []
    lapsed = Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=stale)
    for job_id, worker, attempts, cancelled in lapsed.values_list("pk", "worker_name", "attempts",
                                                                  "cancel_requested"):
        who = worker or "unknown"
        with transaction.atomic():
            if cancelled:  # its owner cancelled it: it ends so, it does not wait in the queue again
                if lapsed.filter(pk=job_id).update(status=Job.Status.CANCELLED):  # taken by this watchdog
                    _finish_in_transaction(job_id, Job.Status.CANCELLED, error="", metrics=None, rows=[], lost=who)
                continue
            if attempts >= settings.TRAINYARD_MAX_ATTEMPTS:  # out of restarts: failed, with the reason
                if lapsed.filter(pk=job_id).update(status=Job.Status.FAILED):  # taken by this watchdog
                    transaction.on_commit(lambda: recorder.inc(recorder.JOBS_LOST))
                    append_events(job_id, [("log", {"level": "error", "text": (
                        f"worker {who} stopped responding; out of attempts, job failed")})])
                    _finish_in_transaction(job_id, Job.Status.FAILED, metrics=None, rows=[], lost=who, error=(
                        f"worker {who} stopped responding while running this job; "
                        f"{_attempts(attempts)} used, the limit (TRAINYARD_MAX_ATTEMPTS) is "
                        f"{settings.TRAINYARD_MAX_ATTEMPTS}, so it was not restarted"))
                continue
            if not lapsed.filter(pk=job_id).update(
                status=Job.Status.QUEUED, heartbeat_at=Now(), dispatched_at=None, worker_name=""
            ):  # no longer that worker's: the page must not name it while the job waits
                continue
            transaction.on_commit(lambda: recorder.inc(recorder.JOBS_LOST))
            append_events(job_id, [
                ("log", {"level": "warning", "text": f"worker {worker} stopped responding; job requeued"}),
                ("status", {"status": Job.Status.QUEUED, "lost": who}),  # marked lost
            ])
            scheduler.dispatch_soon()
        requeued.append(job_id)
    return requeued


# --- the end of a run: status, metrics, artifacts ------------------------------------------------

def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def finish_job(job_id, status: str, *, error: str = "", metrics: dict | None = None,
               artifacts: list[str] = (), token: int | None = None, test_metrics: dict | None = None,
               warnings: list[dict] | None = None) -> None:
    """Record the end of a run: final status, metrics (validation, and the test split's apart),
    the run's warnings about its model, artifacts (with sha256), one status event (which carries
    the warnings too).
    With `token` (a worker's run), only while that run owns the job; `Fenced` otherwise, and
    nothing is written."""
    directory = Job(pk=job_id).directory / "artifacts"
    if token is not None and not owned(job_id, token).exists():
        raise Fenced(job_id, token)  # before hashing files that may be another run's
    rows = []
    for name in artifacts:
        path = directory / name
        rows.append(Artifact(job_id=job_id, name=name, size_bytes=path.stat().st_size, sha256=file_sha256(path)))
    with transaction.atomic():
        _finish_in_transaction(job_id, status, error=error, metrics=metrics, rows=rows, token=token,
                               test_metrics=test_metrics, warnings=warnings)


def fenced_replace(job_id, token: int, moves: list[tuple[str, str]]) -> bool:
    """Move a run's files (checkpoint, artifact: written under a temp name private to its
    attempt) into place only while the run owns the job: check ownership under the row lock,
    then rename, in one transaction, so a claim by another run cannot fall between the two.
    False, and nothing moved, when the run is fenced (the caller deletes its temp files)."""
    with transaction.atomic():
        if owned(job_id, token).select_for_update().values_list("pk", flat=True).first() is None:
            return False
        for tmp, final in moves:
            os.replace(tmp, final)
    return True


def add_artifacts(job_id, names: list[str]) -> None:
    """Register files written later into a finished job's artifacts dir (e.g. model.onnx),
    replacing rows of the same names; call inside the caller's transaction."""
    directory = Job(pk=job_id).directory / "artifacts"
    Artifact.objects.filter(job_id=job_id, name__in=names).delete()
    Artifact.objects.bulk_create([Artifact(job_id=job_id, name=n, size_bytes=(directory / n).stat().st_size,
                                           sha256=file_sha256(directory / n)) for n in names])


def _finish_in_transaction(job_id, status: str, *, error: str, metrics: dict | None, rows: list,
                           lost: str = "", token: int | None = None, test_metrics: dict | None = None,
                           warnings: list[dict] | None = None) -> None:
    if token is not None and owned(job_id, token).select_for_update().first() is None:
        raise Fenced(job_id, token)  # checked (and locked) before the artifact rows change
    Artifact.objects.filter(job_id=job_id).delete()
    Artifact.objects.bulk_create(rows)
    if status == Job.Status.CANCELLED and not error:
        # A stop someone else forced (dataset unshared, account deactivated: jobs/cancel.py)
        # keeps its reason on the job; the owner's own cancel has none.
        error = Job.objects.filter(pk=job_id).values_list("error", flat=True).first() or ""
    updates = {"status": status, "error": error[:10_000], "finished_at": timezone.now(), "eta_seconds": None}
    if metrics:
        updates["metrics"] = dict(metrics)
    if test_metrics:
        updates["test_metrics"] = dict(test_metrics)
    event = {"status": status}
    updates["warnings"] = [dict(w) for w in warnings or ()]  # this run's: a retried job's old ones go
    if warnings:
        event["warnings"] = updates["warnings"]
    if error:
        event["error"] = error[:10_000]
    if lost:
        event["lost"] = lost  # the worker that was lost running it
    append_events(job_id, [("status", event)], token=token, **updates)
    # E-mail / webhook per the owner's settings, from a worker task (never this thread).
    from webapp.accounts.notifications import notify_job_end

    transaction.on_commit(lambda: notify_job_end(job_id, status))
    transaction.on_commit(lambda: recorder.inc(recorder.JOBS_FINISHED, status=status))
    scheduler.dispatch_soon()  # a slot is free
