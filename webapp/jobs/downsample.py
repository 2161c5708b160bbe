"""Server-side downsampling of a job's event history, so a page opening a job with hundreds of
thousands of metric points draws a few thousand instead.

The history a page loads is a *snapshot* up to `last_seq`: a subset of the real stored events
(same shape, same numbers), then the page follows the live tail exactly from `last_seq + 1`.

- metric events: per split (train / val), every numeric series (`loss`, `accuracy`, `lr`, ...)
  keeps at most `points` points chosen by LTTB (largest-triangle-three-buckets, Steinarsson
  2013), which keeps the visual shape (peaks and dips) unlike taking every n-th point. An event
  is returned when any of its series selected it, so each series of the result is its own LTTB
  selection (a few extra points of the other series ride along). Series with `points` or fewer
  points are returned whole.
- resources (the worker's per-job CPU / memory / GPU samples): the same LTTB per series, over
  their wall time `t`.
- progress, samples, confusion: only the latest matters to the page; earlier ones are left out.
- log: the last `log_lines` lines (the count of earlier ones is reported).
- status: all of them (a few per run).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from webapp.jobs.models import Job, JobEvent

LATEST_ONLY = ("progress", "samples", "confusion")
RESOURCE_SERIES = ("cpu_percent", "rss", "gpu_util", "gpu_memory")


def lttb(x, y, threshold: int) -> np.ndarray:
    """Indices (ascending) of at most `threshold` points of the polyline (x, y) chosen by LTTB.

    Always keeps the first and the last point. `x` must be non-decreasing.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    if threshold >= n or n <= 2:
        return np.arange(n)
    if threshold < 3:
        return np.array([0, n - 1])
    out = np.empty(threshold, dtype=np.int64)
    out[0], out[-1] = 0, n - 1
    # Buckets over the inner points 1..n-2; bucket i spans [edges[i], edges[i+1]).
    edges = np.floor(np.linspace(1, n - 1, threshold - 1)).astype(np.int64)
    a = 0
    for i in range(threshold - 2):
        lo, hi = edges[i], max(edges[i + 1], edges[i] + 1)
        # The next bucket's average (the last point for the last bucket).
        nlo, nhi = hi, (edges[i + 2] if i + 2 < len(edges) else n)
        if nhi <= nlo:
            nlo, nhi = n - 1, n
        avg_x, avg_y = x[nlo:nhi].mean(), y[nlo:nhi].mean()
        ax, ay = x[a], y[a]
        area = np.abs((ax - avg_x) * (y[lo:hi] - ay) - (ax - x[lo:hi]) * (avg_y - ay))
        a = lo + int(np.argmax(area))
        out[i + 1] = a
    return np.unique(out)


def select_metric_events(rows: list[tuple[int, dict]], points: int) -> tuple[list[int], bool]:
    """The seqs of the metric events to keep; rows are (seq, data) in seq order.

    Returns (seqs, downsampled?)."""
    by_split: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    for seq, data in rows:
        by_split[str(data.get("split", ""))].append((seq, data))
    keep: set[int] = set()
    downsampled = False
    for split_rows in by_split.values():
        if len(split_rows) <= points:
            keep.update(seq for seq, _ in split_rows)
            continue
        # One polyline per numeric value key, over the events that carry it.
        series: dict[str, tuple[list[float], list[float], list[int]]] = defaultdict(lambda: ([], [], []))
        for seq, data in split_rows:
            step = data.get("step", 0)
            for key, value in (data.get("values") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    xs, ys, seqs = series[key]
                    xs.append(step)
                    ys.append(value)
                    seqs.append(seq)
        kept_any = False
        for xs, ys, seqs in series.values():
            if len(xs) <= points:
                keep.update(seqs)
            else:
                downsampled = True
                keep.update(seqs[i] for i in lttb(xs, ys, points))
            kept_any = True
        if not kept_any:  # no numeric values at all: keep the ends
            keep.update({split_rows[0][0], split_rows[-1][0]})
            downsampled = True
    return sorted(keep), downsampled


def history(job: Job, points: int = 1000, log_lines: int = 2000) -> dict:
    """The job's history up to its current last event, downsampled as described above.

    Returns {"last_seq", "events", "downsampled", "metric_events", "omitted": {kind: count}}:
    `metric_events` is how many metric events the snapshot covers (all of them, kept or not).
    """
    last_seq = Job.objects.values_list("last_seq", flat=True).get(pk=job.pk)
    base = JobEvent.objects.filter(job_id=job.pk, seq__lte=last_seq)
    metric_rows = list(base.filter(kind="metric").order_by("seq").values_list("seq", "data").iterator(chunk_size=5000))
    keep_metric, downsampled = select_metric_events(metric_rows, points)
    keep = set(keep_metric)
    omitted: dict[str, int] = {}
    if len(keep) < len(metric_rows):
        omitted["metric"] = len(metric_rows) - len(keep)
    del metric_rows
    # Resource samples: one polyline per figure over wall time, the metrics' selection.
    resource_rows = [(seq, {"step": d.get("t", 0), "values": {k: d.get(k) for k in RESOURCE_SERIES}})
                     for seq, d in base.filter(kind="resources").order_by("seq").values_list("seq", "data")
                     .iterator(chunk_size=5000)]
    keep_resources, _ = select_metric_events(resource_rows, points)
    keep.update(keep_resources)
    if len(keep_resources) < len(resource_rows):
        omitted["resources"] = len(resource_rows) - len(keep_resources)
    del resource_rows
    for kind in LATEST_ONLY:
        seqs = base.filter(kind=kind).order_by("-seq").values_list("seq", flat=True)
        latest = seqs.first()
        if latest is not None:
            keep.add(latest)
            count = seqs.count()
            if count > 1:
                omitted[kind] = count - 1
    logs = list(base.filter(kind="log").order_by("-seq").values_list("seq", flat=True)[:log_lines])
    keep.update(logs)
    if len(logs) == log_lines:
        older = base.filter(kind="log", seq__lt=logs[-1]).count()
        if older:
            omitted["log"] = older
    keep.update(base.exclude(kind__in=("metric", "resources", "log", *LATEST_ONLY)).values_list("seq", flat=True))
    events = []
    ordered = sorted(keep)
    for i in range(0, len(ordered), 900):  # SQLite caps the number of query parameters
        chunk = ordered[i : i + 900]
        events.extend(e.to_dict() for e in JobEvent.objects.filter(job_id=job.pk, seq__in=chunk).order_by("seq"))
    return {
        "last_seq": last_seq,
        "events": events,
        "downsampled": downsampled,
        "metric_events": len(keep_metric) + omitted.get("metric", 0),
        "omitted": omitted,
    }
