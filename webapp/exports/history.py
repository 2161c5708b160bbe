"""A job's stored metric history, read once for every export (TensorBoard, MLflow).

Each metric event is `{split, step, epoch, values: {name: number}, t}`; `t` is the wall-clock
time the worker emitted it (webapp/jobs/events.py). Events written without `t` (the web tier's
own, older rows) fall back to the time the row was stored. Only numbers are exported (a bool
or a string among the values is not a metric point).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from webapp.jobs.models import Job, JobEvent

CHUNK = 2000  # events per query: memory stays bounded whatever the history's length


@dataclass(frozen=True, slots=True)
class MetricEvent:
    split: str
    step: int
    wall_time: float  # seconds since the epoch
    values: dict[str, float]


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_events(job: Job | str, upto_seq: int | None = None) -> Iterator[MetricEvent]:
    """The job's metric events in stored order (up to `upto_seq`, a snapshot), numbers only.

    Read in pages by event number (one short query each, no cursor held open while a slow
    consumer, such as a push to a remote server, works through them)."""
    job_id = getattr(job, "pk", job)
    rows = JobEvent.objects.filter(job_id=job_id, kind="metric")
    if upto_seq is not None:
        rows = rows.filter(seq__lte=upto_seq)
    after = 0
    while True:
        page = list(rows.filter(seq__gt=after).order_by("seq").values_list("seq", "data", "created_at")[:CHUNK])
        for seq, data, created_at in page:
            event = _event(data, created_at)
            if event is not None:
                yield event
        if len(page) < CHUNK:
            return
        after = page[-1][0]


def _event(data: dict, created_at) -> MetricEvent | None:
    values = {str(k): float(v) for k, v in (data.get("values") or {}).items() if is_number(v)}
    if not values:
        return None
    t = data.get("t")
    wall_time = float(t) if is_number(t) and math.isfinite(t) else created_at.timestamp()
    step = data.get("step")
    return MetricEvent(split=str(data.get("split") or "train"), step=int(step) if is_number(step) else 0,
                       wall_time=wall_time, values=values)


def safe_name(text: str, default: str = "metrics", limit: int = 100) -> str:
    """A file or key name made of letters, digits, `_`, `-` and `.` only (no path tricks)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")[:limit]
    return name or default
