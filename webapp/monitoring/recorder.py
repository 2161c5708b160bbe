"""Counters, histograms and per-process gauges that every Trainyard process records, kept in Redis.

Why Redis and not prometheus_client's multiprocess mode: most of these happen outside the web
server. Event appends are made by the workers' reporters, claims (dispatch latency) and finished
jobs by the training workers, ingests by the ingest workers, often on other machines; the web
tier adds several uvicorn processes. Multiprocess mode only adds up processes of one host that
share a directory (and needs the files of dead processes cleaned up); Redis is already the one
service every process of an installation reaches (`REDIS_URL`). So any web process answers
`/metrics` for the whole installation, and Prometheus scrapes one target.

Recording costs no network: `observe()`, `inc()` and `gauge_add()` change a dict in this
process. A daemon thread adds the increments to one Redis hash every
`TRAINYARD_METRICS_PUSH_SECONDS` (in one MULTI/EXEC, so a failed push is kept and retried whole,
never counted twice); `/metrics` pushes its own process's first. A process's gauges (open
websockets) are one key of its own that expires three pushes after the process stops
refreshing it, so a killed web server's sockets stop being counted. A forked child (Celery's
pool) starts empty: what the parent had not pushed yet is the parent's to push.

Metrics are declared once, below; the scrape side (`families()`) reads their names, help,
labels and buckets from the same declarations.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass

from django.conf import settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    kind: str  # "counter" | "histogram" | "gauge" (per process, summed over the live ones)
    name: str  # counters without `_total`: the exposition adds it
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()  # histograms: upper bounds, +Inf implied
    seed: tuple[tuple[str, ...], ...] = ()  # label values shown as 0 before anything is recorded


FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EVENT_APPEND = Metric(
    "histogram", "trainyard_event_append_seconds",
    "Storing one batch of job events (lock the job, number, insert, commit), in any process",
    buckets=FAST)
EVENT_HISTORY = Metric(
    "histogram", "trainyard_event_history_seconds",
    "The job events endpoint: mode=tail (events after a number), mode=history (the downsampled whole)",
    ("mode",), FAST, seed=(("tail",), ("history",)))
DISPATCH_LATENCY = Metric(
    "histogram", "trainyard_dispatch_latency_seconds",
    "From the dispatcher releasing a job to a worker until that worker claims it (broker and pick-up)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0))
DISPATCH_PASS = Metric(
    "histogram", "trainyard_dispatch_pass_seconds", "One dispatcher pass over the queued jobs", buckets=FAST)
INGEST = Metric(
    "histogram", "trainyard_ingest_duration_seconds",
    "Reading an uploaded dataset into its cache on the ingest worker, by kind and outcome (ready, refused, error)",
    ("kind", "outcome"), (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0))
JOBS_FINISHED = Metric(
    "counter", "trainyard_jobs_finished", "Jobs that ended, by final status", ("status",),
    seed=(("succeeded",), ("failed",), ("cancelled",)))
JOBS_LOST = Metric(
    "counter", "trainyard_jobs_lost",
    "Running jobs whose worker stopped responding (requeued, or failed when out of attempts)")
WEBSOCKETS = Metric(
    "gauge", "trainyard_websocket_connections", "Open websockets, summed over the live web processes",
    ("socket",), seed=(("job",), ("user",)))
WEBSOCKETS_OPENED = Metric(
    "counter", "trainyard_websocket_connections_opened", "Websockets accepted", ("socket",),
    seed=(("job",), ("user",)))

METRICS = (EVENT_APPEND, EVENT_HISTORY, DISPATCH_LATENCY, DISPATCH_PASS, INGEST, JOBS_FINISHED, JOBS_LOST,
           WEBSOCKETS, WEBSOCKETS_OPENED)


# --- this process --------------------------------------------------------------------------------

class _Local:
    """What this process recorded and has not pushed yet (increments), and its gauges (values)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.deltas: dict[str, float] = {}
        self.gauges: dict[str, float] = {}
        self.pusher: threading.Thread | None = None
        self.pid = os.getpid()


_local = _Local()
_client_cache: dict = {}
_last_warning = [0.0]


def _reset_after_fork() -> None:
    global _local
    _local = _Local()
    _client_cache.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def reset() -> None:
    """Forget what this process recorded and not pushed (tests)."""
    _reset_after_fork()


def _field(metric: Metric, values: tuple[str, ...], part: str = "") -> str:
    return json.dumps([metric.name, list(values), part], separators=(",", ":"))


def _values(metric: Metric, labels: dict) -> tuple[str, ...]:
    return tuple(str(labels[name]) for name in metric.labels)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _add(fields: dict[str, float]) -> None:
    state = _local
    with state.lock:
        for f, v in fields.items():
            state.deltas[f] = state.deltas.get(f, 0.0) + v
    _start_pusher(state)


def observe(metric: Metric, seconds: float, **labels) -> None:
    """One observation of a histogram (no network: pushed later)."""
    values = _values(metric, labels)
    i = bisect_left(metric.buckets, seconds)  # the first bucket whose bound is >= the value
    le = _le(metric.buckets[i]) if i < len(metric.buckets) else "+Inf"
    _add({_field(metric, values, le): 1.0, _field(metric, values, "sum"): float(seconds),
          _field(metric, values, "count"): 1.0})


def inc(metric: Metric, amount: float = 1.0, **labels) -> None:
    _add({_field(metric, _values(metric, labels)): float(amount)})


def gauge_add(metric: Metric, delta: float, **labels) -> None:
    """Change this process's value of a gauge (e.g. +1 when a socket opens, -1 when it closes)."""
    state = _local
    key = _field(metric, _values(metric, labels))
    with state.lock:
        state.gauges[key] = state.gauges.get(key, 0.0) + delta
    _start_pusher(state)


class timer:
    """`with timer(EVENT_APPEND): ...` observes the block's duration when it ends without an error."""

    def __init__(self, metric: Metric, **labels):
        self.metric, self.labels = metric, labels

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            observe(self.metric, time.perf_counter() - self.start, **self.labels)
        return False


# --- Redis ------------------------------------------------------------------------------------------

def _client():
    import redis

    url = settings.REDIS_URL
    client = _client_cache.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        _client_cache.clear()
        _client_cache[url] = client
    return client


def _prefix() -> str:
    return f"{settings.TRAINYARD_CHANNEL_PREFIX}:metrics"


def _shared_key() -> str:
    return f"{_prefix()}:shared"


def _process_key() -> str:
    return f"{_prefix()}:proc:{socket.gethostname()}:{os.getpid()}"


def _push_seconds() -> float:
    return float(getattr(settings, "TRAINYARD_METRICS_PUSH_SECONDS", 10))


def _gauge_ttl() -> int:
    return max(30, int(3 * _push_seconds()))


def flush() -> bool:
    """Push this process's increments and gauges to Redis now; False (kept for the next push)
    when Redis cannot be reached."""
    state = _local
    with state.lock:
        deltas, state.deltas = state.deltas, {}
        gauges = dict(state.gauges)
    if not deltas and not gauges:
        return True
    try:
        pipe = _client().pipeline(transaction=True)
        shared = _shared_key()
        for f, v in deltas.items():
            pipe.hincrbyfloat(shared, f, v)
        if gauges:
            pipe.set(_process_key(), json.dumps(gauges), ex=_gauge_ttl())
        pipe.execute()
        return True
    except Exception as exc:  # noqa: BLE001 - Redis down: keep the increments, never fail the caller
        with state.lock:
            for f, v in deltas.items():
                state.deltas[f] = state.deltas.get(f, 0.0) + v
        if time.monotonic() - _last_warning[0] > 60:
            _last_warning[0] = time.monotonic()
            log.warning("metrics not pushed to Redis (kept for the next try): %s", exc)
        return False


def _start_pusher(state: _Local) -> None:
    interval = _push_seconds()
    if interval <= 0 or state.pusher is not None:
        return
    with state.lock:
        if state.pusher is not None:
            return
        state.pusher = threading.Thread(target=_push_forever, args=(state, interval), name="metrics-pusher",
                                        daemon=True)
    state.pusher.start()


def _push_forever(state: _Local, interval: float) -> None:
    while state is _local:  # a forked child has its own state (and its own thread)
        time.sleep(interval)
        if state is _local:
            flush()


# --- the scrape side ------------------------------------------------------------------------------------

def read() -> tuple[dict[str, float], list[dict[str, float]]]:
    """(the shared increments, each live process's gauges) as stored in Redis."""
    client = _client()
    shared = {k.decode(): float(v) for k, v in client.hgetall(_shared_key()).items()}
    keys = list(client.scan_iter(match=f"{_prefix()}:proc:*", count=500))
    processes = [json.loads(raw) for raw in client.mget(keys) if raw] if keys else []
    return shared, processes


def families():
    """The recorded metrics as prometheus_client metric families (for a custom Collector)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    shared, processes = read()
    by_metric: dict[str, dict[tuple, dict[str, float]]] = {}
    for f, v in shared.items():
        name, values, part = json.loads(f)
        by_metric.setdefault(name, {}).setdefault(tuple(values), {})[part] = v
    gauges: dict[str, dict[tuple, float]] = {}
    for proc in processes:
        for f, v in proc.items():
            name, values, _ = json.loads(f)
            series = gauges.setdefault(name, {})
            series[tuple(values)] = series.get(tuple(values), 0.0) + v
    for m in METRICS:
        stored = by_metric.get(m.name, {})
        if m.kind == "counter":
            fam = CounterMetricFamily(m.name, m.help, labels=m.labels)
            for values in _series(m, stored):
                fam.add_metric(list(values), stored.get(values, {}).get("", 0.0))
        elif m.kind == "gauge":
            fam = GaugeMetricFamily(m.name, m.help, labels=m.labels)
            current = gauges.get(m.name, {})
            for values in _series(m, current):
                fam.add_metric(list(values), current.get(values, 0.0))
        else:
            fam = HistogramMetricFamily(m.name, m.help, labels=m.labels)
            for values in _series(m, stored):
                parts = stored.get(values, {})
                cumulative, buckets = 0.0, []
                for bound in (*m.buckets, float("inf")):
                    cumulative += parts.get(_le(bound), 0.0)
                    buckets.append((_le(bound), cumulative))
                fam.add_metric(list(values), buckets, parts.get("sum", 0.0))
        yield fam


def _series(metric: Metric, stored: dict) -> list[tuple]:
    """The label values to show: those recorded, the seeded ones, or the one unlabelled series."""
    seen = set(stored) | set(metric.seed)
    if not metric.labels:
        seen.add(())
    return sorted(seen)
