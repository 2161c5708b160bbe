"""The Reporter: turns training callbacks into numbered job events, off the training thread.

Hooks only append to an in-memory buffer (no I/O on the training thread). A flusher thread
stores the buffered events in one transaction (bulk insert with the next sequence numbers,
plus the job's progress fields), publishes them to `job.<id>`, and reads the job's cancel
flag, stopping the run with `control.request_stop("cancel")` when a user asked to cancel (a
shutdown stops it with reason "requeue", `request_requeue`). It flushes as soon as an
event arrives (after COALESCE_SECONDS, so one burst is one write), rate-limited by a token
bucket: on average at most one flush per `flush_seconds`, with up to BURST flushes back to
back (an epoch's end sends its train metric, then its validation metric, confusion and samples
a moment later; none of them waits out the rate limit). Events that arrive while no token is
left are batched into the next flush. It also flushes at least once per IDLE_SECONDS
(heartbeat, progress and cancel check).

Every flush is conditional on the run's owner token (append_events(token=...)): a run that lost
its job (its lease lapsed while it was paused, another run took over) stores nothing, and the
flush that finds it out stops the run at once (`control.request_stop("fenced")`, `fenced`).
The last flush (`close`) reconnects and retries over a dropped database connection (retry_db).
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models.functions import Now

from webapp.jobs.dbretry import retry_db
from webapp.jobs.events import Fenced, append_events
from webapp.jobs.models import Job, JobEvent
from workers.training.callbacks import Callback, Control, TrainState

log = logging.getLogger(__name__)

PROGRESS_EVERY = 0.5  # seconds between progress events
IDLE_SECONDS = 1.0  # flush (heartbeat, cancel check) at least this often
COALESCE_SECONDS = 0.005  # after the first event, wait this long for the rest of its burst
BURST = 3  # flushes that may follow each other without waiting for the rate limit


class Reporter(Callback):
    def __init__(self, job_id, flush_seconds: float | None = None, token: int | None = None):
        self.job_id = job_id
        self.token = token  # the run's owner token (RunStart.token); None: unfenced (tests)
        self.control = Control()  # control.stop_reason says why the run stopped: "cancel" | "requeue"
        self.flush_seconds = flush_seconds or settings.TRAINYARD_EVENT_FLUSH_SECONDS
        self._buffer: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._progress: dict | None = None
        self._last_progress = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reporter-{job_id}", daemon=True)
        # After a restart the run replays steps since its checkpoint; metric points the page
        # already has are not sent twice.
        last = {kind: JobEvent.objects.filter(job_id=job_id, kind=kind).order_by("-seq")
                .values_list("data", flat=True).first() for kind in ("metric", "confusion", "samples")}
        self._replay_until = int(last["metric"]["step"]) if last["metric"] else -1
        # ... nor the confusion matrix and samples of an epoch evaluated before the crash.
        self._replay_epochs = {kind: int(d["epoch"]) if d else -1 for kind, d in last.items() if kind != "metric"}
        # The test split is reported once, after the last epoch (its step is the last val point's).
        self._test_sent = JobEvent.objects.filter(job_id=job_id, kind="metric", data__split="test").exists()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Reporter:
        self._thread.start()
        return self

    @property
    def fenced(self) -> bool:
        """True once a write was refused: this run no longer owns its job."""
        return self.control.stop_reason == "fenced"

    def close(self) -> None:
        """Stop the flusher and write whatever is still buffered (over a dropped connection too)."""
        self._stop.set()
        self._wake.set()
        self._thread.join()
        if not self.fenced:
            retry_db(self.flush)

    def _run(self) -> None:
        tokens, refilled = float(BURST), time.monotonic()

        def refill() -> float:
            nonlocal tokens, refilled
            now = time.monotonic()
            tokens = min(float(BURST), tokens + (now - refilled) / self.flush_seconds)
            refilled = now
            return tokens

        try:
            while not self._stop.is_set() and not self.fenced:
                woke = self._wake.wait(IDLE_SECONDS)
                if woke:
                    # Wait for the rest of the burst, or for a token; events keep buffering.
                    pause = max(COALESCE_SECONDS, (1.0 - refill()) * self.flush_seconds)
                    if self._stop.wait(pause):
                        break
                    refill()
                self._wake.clear()  # before the buffer is taken: a later event wakes us again
                with self._lock:
                    has_events = bool(self._buffer)
                if woke and not has_events:
                    continue  # its events went out with the previous flush
                if has_events:
                    tokens -= 1.0
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - keep training; the next flush retries
                    log.exception("reporter flush failed for job %s", self.job_id)
                    close_old_connections()
        finally:
            connection.close()

    def flush(self) -> None:
        with self._lock:
            events, self._buffer = self._buffer, []
            progress, self._progress = self._progress, None
        if self.fenced:
            return
        updates = {"heartbeat_at": Now()}  # the database's clock: the lease is judged by it
        if progress:
            updates.update(epoch=progress["epoch"], step=progress["step"], total_steps=progress["total_steps"],
                           eta_seconds=progress["eta_seconds"])
            events.append(("progress", {**progress, "t": round(time.time(), 4)}))
        try:
            append_events(self.job_id, events, token=self.token, **updates)
        except Fenced as exc:  # another run owns the job now: stop, write nothing more
            log.warning("%s; stopping this run and discarding its output", exc)
            self.control.request_stop("fenced")
            return
        except Exception:
            with self._lock:  # keep the events for the next flush: nothing is lost
                self._buffer[:0] = [e for e in events if e[0] != "progress"]
            raise
        cancel, requeue = Job.objects.filter(pk=self.job_id).values_list(
            "cancel_requested", "requeue_requested").first() or (False, False)
        if requeue:
            self.request_requeue()
        if cancel:  # outranks a requeue (Control.request_stop)
            self.control.request_stop("cancel")

    @property
    def requeue(self) -> bool:
        """True when the run stopped for a shutdown (and no user cancelled it)."""
        return self.control.stop_reason == "requeue"

    def request_requeue(self) -> None:
        """The worker is shutting down: stop at the next step; the task requeues the job.
        Safe from a signal handler (it only sets a field)."""
        self.control.request_stop("requeue")

    def emit(self, kind: str, data: dict) -> None:
        """Buffer one event; `t` is when it happened (wall clock), for latency measurements."""
        data["t"] = round(time.time(), 4)
        with self._lock:
            self._buffer.append((kind, data))
        self._wake.set()

    # -- callback hooks (training thread: cheap only) -----------------------------------
    def _set_progress(self, state: TrainState) -> None:
        eta = state.eta_seconds()
        with self._lock:
            self._progress = {
                "epoch": state.epoch,
                "epochs": state.epochs,
                "step": state.step,
                "total_steps": state.total_steps,
                "eta_seconds": round(eta, 1) if eta is not None else None,
                "samples_seen": state.samples_seen,
            }

    def on_train_begin(self, state, control):
        self._set_progress(state)

    def on_step_end(self, state, control):
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            self._set_progress(state)

    def on_log(self, state, control, split, values):
        if self._test_sent if split == "test" else state.step <= self._replay_until:
            return
        self.emit("metric", {"split": split, "step": state.step,
                             "epoch": round(state.step / max(state.steps_per_epoch, 1), 4), "values": values})

    def on_eval(self, state, control, metrics):
        if "confusion" in metrics and state.epoch > self._replay_epochs["confusion"]:
            self.emit("confusion", {"epoch": state.epoch, "matrix": metrics["confusion"]})

    def on_samples(self, state, control, samples):
        if state.epoch > self._replay_epochs["samples"]:
            self.emit("samples", {"epoch": state.epoch, "items": samples})

    def on_message(self, state, control, level, text):
        self.emit("log", {"level": level, "text": text})

    def on_epoch_end(self, state, control):
        self._set_progress(state)

    def on_train_end(self, state, control, status):
        self._set_progress(state)
