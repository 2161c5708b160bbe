"""The dispatcher: queued jobs go to Celery only when a worker is free, in our order, not the broker's.

Called after a submit, finish, cancel or requeue commits and on every worker heartbeat. One pass:
1. capacity: registered workers that are online, heartbeating, not drained/retired, consume the
   train queue, run no job and have no job dispatched to them yet: one slot each (one job per GPU);
2. while a slot is free: among queued, undispatched jobs whose owner is below their running limit
   and that some free worker can run (min GPU memory, GPU type), take the one whose owner has the
   fewest running (or dispatched) jobs, then the highest priority, then the oldest; mark it
   dispatched to that worker and send it after the commit;
3. every job left waiting gets an honest reason ("waiting for a GPU with ≥ 24 GB", ...).

Safe with several processes: the pass runs in one transaction that locks the queued rows
(SELECT ... FOR UPDATE on PostgreSQL; SQLite transactions here are BEGIN IMMEDIATE, so passes
are serialised by the database's write lock).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webapp.jobs.models import Job, UserLimits

log = logging.getLogger(__name__)

GB = 1_000_000_000


def train_queue() -> str:
    return settings.CELERY_TASK_ROUTES.get("trainyard.train_job", {}).get("queue", "train")


def own_queue(worker_name: str) -> str:
    """The queue only this worker consumes (added at its start, workers/adapters/worker.py): the
    dispatcher sends each job to the worker it chose, so no other free worker takes it first."""
    return f"{train_queue()}.{worker_name}"


def route(worker) -> str | None:
    """Where to send a job dispatched to this worker: its own queue when it has one (an older
    worker without one gets the shared train queue, and bounces a job it cannot run)."""
    q = own_queue(worker.name)
    return q if q in worker.queues.split(",") else None


def running_limit(user_id, overrides: dict) -> int:
    v = overrides.get(user_id)
    return v if v is not None else settings.TRAINYARD_MAX_RUNNING_PER_USER


def queued_limit(user) -> int:
    lim = UserLimits.objects.filter(user=user).values_list("max_queued", flat=True).first()
    return lim if lim is not None else settings.TRAINYARD_MAX_ACTIVE_JOBS_PER_USER


def fits(job: Job, gpus: list[dict]) -> bool:
    """Whether a worker with these GPUs can run the job (a CPU worker fits only jobs without needs)."""
    if not job.min_gpu_memory_gb and not job.gpu_type:
        return True
    for g in gpus:
        if job.min_gpu_memory_gb and (g.get("memory_total") or 0) < job.min_gpu_memory_gb * GB:
            continue
        if job.gpu_type and job.gpu_type.lower() not in (g.get("name") or "").lower():
            continue
        return True
    return False


def need_text(job: Job) -> str:
    parts = []
    if job.gpu_type:
        parts.append(f"a {job.gpu_type} GPU")
    else:
        parts.append("a GPU")
    if job.min_gpu_memory_gb:
        parts.append(f"with ≥ {job.min_gpu_memory_gb} GB")
    return " ".join(parts)


def live_workers():
    from webapp.cluster.models import Worker

    stale = timezone.now() - timedelta(seconds=settings.TRAINYARD_HEARTBEAT_SECONDS * 3)
    q = train_queue()
    return [w for w in Worker.objects.filter(status=Worker.Status.ONLINE, last_heartbeat__gte=stale)
            if q in w.queues.split(",")]


def dispatch() -> list[str]:
    """One pass (see module doc); returns the ids of the jobs released to workers."""
    from webapp.jobs import services

    sent: list[str] = []
    with transaction.atomic():
        queued = list(Job.objects.select_for_update().filter(status=Job.Status.QUEUED).order_by("created_at", "pk"))
        if not queued:
            return sent
        workers = live_workers()
        running = list(Job.objects.filter(status=Job.Status.RUNNING).values_list("owner_id", "worker_name"))
        busy = {name for _, name in running} | {w.name for w in workers if w.current_job_id}
        # A job dispatched but not yet claimed holds its worker. If that worker vanished or was
        # drained before taking it, the job is dispatched again (a stale message left in that
        # worker's queue is refused by the claim if the job runs elsewhere).
        taking_jobs = {w.name for w in workers if not w.draining}
        for job in queued:
            if job.dispatched_at and job.worker_name not in taking_jobs:
                job.dispatched_at = None
                Job.objects.filter(pk=job.pk).update(dispatched_at=None, worker_name="")
            elif job.dispatched_at:
                busy.add(job.worker_name)
        free = [w for w in workers if w.name not in busy and not w.draining]
        active = Counter(owner for owner, _ in running)
        active.update(j.owner_id for j in queued if j.dispatched_at)
        overrides = dict(UserLimits.objects.filter(user_id__in={j.owner_id for j in queued})
                         .values_list("user_id", "max_running"))
        waiting = [j for j in queued if not j.dispatched_at]
        now = timezone.now()
        while free and waiting:
            candidates = [j for j in waiting if active[j.owner_id] < running_limit(j.owner_id, overrides)
                          and any(fits(j, w.gpus) for w in free)]
            if not candidates:
                break
            job = min(candidates, key=lambda j: (active[j.owner_id], -j.priority, j.created_at, str(j.pk)))
            # The smallest worker that fits, so big GPUs stay free for jobs that need them.
            worker = min((w for w in free if fits(job, w.gpus)),
                         key=lambda w: (sum(g.get("memory_total") or 0 for g in w.gpus), w.name))
            free.remove(worker)
            waiting.remove(job)
            active[job.owner_id] += 1
            Job.objects.filter(pk=job.pk).update(dispatched_at=now, worker_name=worker.name, wait_reason="")
            transaction.on_commit(lambda job_id=job.pk, q=route(worker): services.enqueue(job_id, queue=q))
            sent.append(str(job.pk))
        # Honest reasons for the rest.
        accepting = [w for w in workers if not w.draining]
        any_fit = {j.pk: any(fits(j, w.gpus) for w in accepting) for j in waiting}
        ahead = 0
        order = sorted(waiting, key=lambda j: (active[j.owner_id], -j.priority, j.created_at))
        changed = []
        for job in order:
            limit = running_limit(job.owner_id, overrides)
            if not accepting:
                reason = "waiting for a worker: none is online" + (" and taking jobs (drained)" if workers else "")
            elif not any_fit[job.pk]:
                reason = f"waiting for {need_text(job)}: no such worker is online"
            elif active[job.owner_id] >= limit:
                reason = f"you have {active[job.owner_id]} running (limit {limit})"
            else:
                reason = f"waiting for a free worker; {ahead} ahead" if ahead else "waiting for a free worker; next"
                ahead += 1
            if reason[:255] != job.wait_reason:
                job.wait_reason = reason[:255]
                changed.append(job)
        # One statement for all of them: each new job changes the "N ahead" of every other.
        Job.objects.bulk_update(changed, ["wait_reason"], batch_size=500)
    if sent:
        log.info("dispatched %s", ", ".join(sent))
    return sent


def dispatch_soon() -> None:
    """Run a pass after the current transaction commits (or now, outside one); never raises."""
    def run():
        try:
            dispatch()
        except Exception:  # noqa: BLE001 - the heartbeat's periodic pass will try again
            log.exception("dispatch pass failed")

    transaction.on_commit(run)
