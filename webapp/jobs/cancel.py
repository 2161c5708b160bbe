"""Cancelling jobs: the owner's verb, and the ends others' actions force (a dataset unshared or
deleted, an account deactivated). Its own module so that dataset and account code can end jobs
without importing the job services (which import the hub, which imports the datasets)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from webapp.accounts import audit
from webapp.jobs import scheduler
from webapp.jobs.events import append_events
from webapp.jobs.models import Job


def cancel_job(job: Job, actor=None, reason: str = "") -> Job:
    """A queued job is cancelled at once (and its owner notified, as for a running one that
    stops); a running one is asked to stop at a step boundary. `reason`: why, when it is not
    the owner's own cancel (shown on the job)."""
    from webapp.accounts.notifications import notify_job_end

    now = timezone.now()
    with transaction.atomic():
        if not job.is_final:
            audit.record(actor, "job.cancel", job, **({"reason": reason} if reason else {}))
        if Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
            status=Job.Status.CANCELLED, cancel_requested=True, finished_at=now, error=reason[:10_000]
        ):
            event = {"status": Job.Status.CANCELLED, **({"error": reason} if reason else {})}
            append_events(job.pk, [("status", event)])
            transaction.on_commit(lambda: notify_job_end(job.pk, Job.Status.CANCELLED))
        elif Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, cancel_requested=False).update(
            cancel_requested=True, **({"error": reason[:10_000]} if reason else {})
        ):  # the reason stays on the job when its run stops (lifecycle keeps it for "cancelled")
            text = f"cancel requested: {reason}" if reason else "cancel requested"
            append_events(job.pk, [("log", {"level": "warning" if reason else "info", "text": text})])
        scheduler.dispatch_soon()
    job.refresh_from_db()
    return job


def cancel_active_jobs(jobs, reason: str, actor=None) -> int:
    """Cancel every queued or running job of `jobs` (a queryset) with the reason; how many."""
    active = list(jobs.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING]))
    for job in active:
        cancel_job(job, actor=actor, reason=reason)
    return len(active)
