"""Numbered job events: stored first, then pushed to the `job.<id>` group.

The database is the source of truth; the websocket push only notifies. A page that misses a
push (channels_redis drops messages past a channel's capacity, Redis may be restarting)
re-syncs by asking for events after the last number it has.
"""

from __future__ import annotations

import json
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F

from webapp.jobs.models import Job, JobEvent

log = logging.getLogger(__name__)


def group_name(job_id) -> str:
    return f"job.{job_id}"


def append_events(job_id, events: list[tuple[str, dict]], **job_updates) -> list[dict]:
    """Store events with the next sequence numbers (and apply `job_updates`) in one transaction.

    Returns the serialised events; they are published after the transaction commits.
    """
    if not events and not job_updates:
        return []
    with transaction.atomic():
        # The row lock serialises numbering across web and worker processes (on SQLite the
        # IMMEDIATE transaction already holds the database write lock).
        last = Job.objects.select_for_update().values_list("last_seq", flat=True).get(pk=job_id)
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
    return payload


def publish(job_id, events: list[dict]) -> None:
    """Push stored events to the job's viewers as one websocket frame, serialised here once
    (not once per viewer in each consumer: 200 viewers of a job cost one json.dumps)."""
    layer = get_channel_layer()
    if layer is None:
        return
    frame = json.dumps({"type": "events", "events": events}, separators=(",", ":"))
    try:
        async_to_sync(layer.group_send)(group_name(job_id), {"type": "job.events", "frame": frame})
    except Exception as exc:  # noqa: BLE001 - events are safe in the database; pages re-sync
        log.warning("could not publish %d events of job %s: %s", len(events), job_id, exc)


def user_group(user_id) -> str:
    return f"user.{user_id}"


def publish_to_user(user_id, job_id) -> None:
    """Tell the owner's open pages (jobs list, toasts) that a job changed state."""
    layer = get_channel_layer()
    if layer is None:
        return
    job = Job.objects.select_related("owner", "dataset").prefetch_related("artifacts").filter(pk=job_id).first()
    if job is None:
        return
    try:
        async_to_sync(layer.group_send)(user_group(user_id), {"type": "job.changed", "job": job.to_dict()})
    except Exception as exc:  # noqa: BLE001 - the pages re-sync from the API
        log.warning("could not notify user %s about job %s: %s", user_id, job_id, exc)


def events_after(job, after: int = 0, limit: int = 5000) -> list[dict]:
    qs = JobEvent.objects.filter(job=job, seq__gt=after).order_by("seq")[:limit]
    return [e.to_dict() for e in qs]
