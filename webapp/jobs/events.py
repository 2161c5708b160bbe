"""Numbered job events: stored first, then pushed to the `job.<id>` group.

The database is the source of truth; the websocket push only notifies. A page that misses a
push (channels_redis drops messages past a channel's capacity, Redis may be restarting)
re-syncs by asking for events after the last number it has.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F

from webapp.jobs.models import Job, JobEvent, summarise
from webapp.jobs.signals import job_progressed
from webapp.monitoring import recorder

log = logging.getLogger(__name__)


class _LoopSender:
    """Channel-layer sends from plain threads through one long-lived event loop per process.

    `async_to_sync` outside an event loop starts a thread and a fresh loop for every call, and
    channels_redis keeps its connections per loop, so each send would connect to Redis anew.
    Worker processes (the reporter's flusher publishes several times a second) send through
    this loop instead; it is made again after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                self._loop = asyncio.new_event_loop()
                self._pid = os.getpid()
                threading.Thread(target=self._loop.run_forever, name="channel-layer-sender", daemon=True).start()
            return self._loop

    def __call__(self, group: str, message: dict, timeout: float = 5.0) -> None:
        future = asyncio.run_coroutine_threadsafe(get_channel_layer().group_send(group, message), self._get_loop())
        try:
            future.result(timeout)
        except BaseException:
            future.cancel()
            raise


def _async_to_sync_send(group: str, message: dict) -> None:
    async_to_sync(get_channel_layer().group_send)(group, message)


# The web tier (Daphne) bridges to its own running loop; workers switch to a persistent loop.
_send = _async_to_sync_send


def use_persistent_loop() -> None:
    """Called once in worker processes: send through one long-lived loop (see _LoopSender)."""
    global _send
    _send = _LoopSender()


def group_send(group: str, message: dict) -> None:
    """Send `message` to a channel-layer group from synchronous code (no-op without a layer)."""
    if get_channel_layer() is not None:
        _send(group, message)


def group_name(job_id) -> str:
    return f"job.{job_id}"


class Fenced(Exception):
    """A worker's write was refused: its run no longer owns the job (the lease lapsed and the job
    was requeued, claimed by another run, finished or deleted). The run must stop and discard
    its output (docs/operations.md, "Job ownership")."""

    def __init__(self, job_id, token):
        super().__init__(f"job {job_id}: this run (owner token {token}) no longer owns the job")
        self.job_id, self.token = job_id, token


def owned(job_id, token):
    """The job's row while the run holding `token` owns it: running, with that owner token."""
    return Job.objects.filter(pk=job_id, owner_token=token, status=Job.Status.RUNNING)


def append_events(job_id, events: list[tuple[str, dict]], *, token: int | None = None,
                  **job_updates) -> list[dict]:
    """Store events with the next sequence numbers (and apply `job_updates`) in one transaction.

    `token`: the write of a worker's run, made only while that run owns the job (compare-and-set
    under the row lock); otherwise nothing is written and `Fenced` is raised. The web tier's own
    writes (submit, cancel, the watchdog) pass none.
    Returns the serialised events; they are published after the transaction commits.
    """
    if not events and not job_updates:
        return []
    with recorder.timer(recorder.EVENT_APPEND), transaction.atomic():
        # The row lock serialises numbering across web and worker processes (on SQLite the
        # IMMEDIATE transaction already holds the database write lock).
        rows = Job.objects.filter(pk=job_id) if token is None else owned(job_id, token)
        found = rows.select_for_update().values_list("last_seq", "summary").first()
        if found is None:
            if token is not None:
                raise Fenced(job_id, token)
            raise Job.DoesNotExist(f"job {job_id} does not exist")
        last, summary = found
        # The job's latest and best validation metrics, once per batch (search and sort read them).
        val = [data.get("values") for kind, data in events if kind == "metric" and data.get("split") == "val"]
        if val and (new_summary := summarise(summary or {}, val)) != summary:
            job_updates["summary"] = new_summary
        rows = [JobEvent(job_id=job_id, seq=last + i + 1, kind=kind, data=data) for i, (kind, data) in enumerate(events)]
        JobEvent.objects.bulk_create(rows)
        if rows:
            job_updates["last_seq"] = F("last_seq") + len(rows)
        if job_updates:
            Job.objects.filter(pk=job_id).update(**job_updates)
        payload = [r.to_dict() for r in rows]
        if payload:
            transaction.on_commit(lambda: publish(job_id, payload))
        if any(kind == "status" for kind, _ in events):
            owner_id = Job.objects.values_list("owner_id", flat=True).get(pk=job_id)
            transaction.on_commit(lambda: publish_to_user(owner_id, job_id))
        final = any(kind == "status" and data.get("status") in Job.FINAL for kind, data in events)
        if final or any(kind == "metric" and data.get("split") == "val" for kind, data in events):
            transaction.on_commit(lambda: _progressed(job_id, final))
    return payload


def _progressed(job_id, final: bool) -> None:
    """Tell the receivers of signals.job_progressed (a sweep's advance); never raises: the events
    are stored, and the receivers' periodic pass catches up."""
    for receiver, result in job_progressed.send_robust(sender=Job, job_id=job_id, final=final):
        if isinstance(result, Exception):
            log.error("%s failed on job %s: %r", receiver, job_id, result, exc_info=result)


def publish(job_id, events: list[dict]) -> None:
    """Push stored events to the job's viewers as one websocket frame, serialised here once
    (not once per viewer in each consumer: 200 viewers of a job cost one json.dumps)."""
    frame = json.dumps({"type": "events", "events": events}, separators=(",", ":"))
    try:
        group_send(group_name(job_id), {"type": "job.events", "frame": frame})
    except Exception as exc:  # noqa: BLE001 - events are safe in the database; pages re-sync
        log.warning("could not publish %d events of job %s: %s", len(events), job_id, exc)


def user_group(user_id) -> str:
    return f"user.{user_id}"


def auth_group(user_id) -> str:
    """Every open socket of a user, told to close when their sign-in ends (accounts.sockets)."""
    return f"auth.{user_id}"


def publish_to_user(user_id, job_id) -> None:
    """Tell the owner's open pages (jobs list, toasts) that a job changed state."""
    if get_channel_layer() is None:
        return
    job = Job.objects.select_related("owner", "dataset").prefetch_related("artifacts", "tags").filter(pk=job_id).first()
    if job is None:
        return
    try:
        group_send(user_group(user_id), {"type": "job.changed", "job": job.to_dict(), "seq": user_cursor(job_id=job_id)})
    except Exception as exc:  # noqa: BLE001 - the pages re-sync from the API
        log.warning("could not notify user %s about job %s: %s", user_id, job_id, exc)


def user_cursor(user_id=None, job_id=None) -> int:
    """The user stream's sequence number: the id of the newest status event (of one job, or of
    all the user's jobs). Status events are stored rows, so a socket that was away can ask for
    every change after the last number it saw (`user_changes_after`)."""
    qs = JobEvent.objects.filter(kind="status")
    qs = qs.filter(job_id=job_id) if job_id is not None else qs.filter(job__owner_id=user_id)
    return qs.order_by("-id").values_list("id", flat=True).first() or 0


def user_changes_after(user_id, after: int, limit: int = 500) -> list[dict]:
    """The user's jobs whose status changed after `after`, each once, as {"job", "seq"} in order
    (the job's state now: a replay sets the page right, it does not re-enact every step)."""
    rows = (JobEvent.objects.filter(kind="status", job__owner_id=user_id, id__gt=after)
            .order_by("id").values_list("id", "job_id")[:limit])
    last = {}
    for event_id, job_id in rows:
        last[job_id] = event_id
    jobs = {j.pk: j for j in Job.objects.select_related("owner", "dataset").prefetch_related("artifacts", "tags")
            .filter(pk__in=list(last))}
    return [{"job": jobs[j].to_dict(), "seq": seq} for j, seq in sorted(last.items(), key=lambda kv: kv[1])
            if j in jobs]


def events_after(job, after: int = 0, limit: int = 5000) -> list[dict]:
    qs = JobEvent.objects.filter(job=job, seq__gt=after).order_by("seq")[:limit]
    return [e.to_dict() for e in qs]
