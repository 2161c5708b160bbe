"""The callback interface between the training loop and whoever watches it.

Shaped like transformers' `TrainerCallback`: every hook is a no-op by default and receives
the shared `TrainState` plus a `Control` through which a callback may stop the run (the cancel
check does). Hooks run on the training thread, so they must return quickly: no network or
database calls here; buffer and let another thread do the I/O.

The loop's own policies are callbacks too (`KeepBest`, `EarlyStopping`, like transformers'
`EarlyStoppingCallback`); they carry state across a restart through the checkpoint
(`state_dict` / `load_state_dict`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    epochs: int = 0
    epoch: int = 0  # epochs completed so far
    step: int = 0  # optimizer steps taken so far (global)
    steps_per_epoch: int = 0
    total_steps: int = 0
    samples_seen: int = 0
    start_step: int = 0  # step the run (re)started from
    started_at: float = field(default_factory=time.monotonic)
    learning_rate: float = 0.0
    best_metric: float | None = None
    val_metrics: dict[str, Any] = field(default_factory=dict)

    def eta_seconds(self) -> float | None:
        done = self.step - self.start_step
        if done <= 0 or not self.total_steps:
            return None
        elapsed = time.monotonic() - self.started_at
        return elapsed / done * max(0, self.total_steps - self.step)


STOP_REASONS = ("cancel", "requeue", "fenced")


@dataclass
class Control:
    """What the callbacks ask of the loop.

    `stop_reason` says why a run stops before its end: "cancel" (a user asked) or "requeue"
    (the worker shuts down; the job goes back to the queue). Either way the run ends at the next
    step with status "cancelled" and exports nothing; the caller reads the reason to tell them
    apart. `finish` is different: the run has done what it should (early stopping) and ends
    after this epoch like a completed one, exporting its model.
    """

    stop_reason: str | None = None
    finish: bool = False

    def request_stop(self, reason: str) -> None:
        """Stop at the next step. A cancel outranks a requeue: a user's cancel is final even if
        the worker was shutting down too (the job must not go back to the queue)."""
        if reason not in STOP_REASONS:
            raise ValueError(f"unknown stop reason {reason!r}")
        if self.stop_reason == "fenced":
            return  # the run lost its job (workers/adapters/reporter.py): nothing else matters
        if self.stop_reason is None or reason in ("cancel", "fenced"):
            self.stop_reason = reason

    @property
    def should_stop(self) -> bool:
        return self.stop_reason is not None

    @should_stop.setter
    def should_stop(self, value: bool) -> None:
        # Callers that only know "stop" (tests, older callbacks) stop as a cancel.
        if value:
            self.request_stop("cancel")
        else:
            self.stop_reason = None


class Callback:
    def on_train_begin(self, state: TrainState, control: Control) -> None: ...

    def on_step_end(self, state: TrainState, control: Control) -> None: ...

    def on_log(self, state: TrainState, control: Control, split: str, values: dict) -> None:
        """Aggregated metric values (train every log interval, val after each evaluation)."""

    def on_eval(self, state: TrainState, control: Control, metrics: dict) -> None: ...

    def on_samples(self, state: TrainState, control: Control, samples: list[dict]) -> None: ...

    def on_message(self, state: TrainState, control: Control, level: str, text: str) -> None: ...

    def on_epoch_end(self, state: TrainState, control: Control) -> None: ...

    def on_train_end(self, state: TrainState, control: Control, status: str) -> None: ...


class CallbackList:
    """Calls the same hook on every callback, in order."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def fire(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)


def _better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


class KeepBest(Callback):
    """Tracks the best validation value of `monitor` ("max" or "min" is better) in
    `state.best_metric`, with that epoch's metrics; with `model`, also a copy of its weights then
    (keep="best": the run exports those instead of the last epoch's).

    Runs in `on_eval`, before the epoch's checkpoint, which carries its state."""

    def __init__(self, monitor: str, mode: str, model=None):
        self.monitor, self.mode, self.model = monitor, mode, model
        self.best_metrics: dict = {}
        self.best_weights: dict | None = None

    def on_eval(self, state: TrainState, control: Control, metrics: dict) -> None:
        if _better(metrics[self.monitor], state.best_metric, self.mode):
            state.best_metric, self.best_metrics = metrics[self.monitor], metrics
            if self.model is not None:
                self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict:
        out: dict = {"best_metrics": self.best_metrics}
        if self.best_weights is not None:
            out["best_model"] = self.best_weights
        return out

    def load_state_dict(self, ckpt: dict, device) -> None:
        self.best_metrics = dict(ckpt.get("best_metrics", {}))
        if "best_model" in ckpt:
            self.best_weights = {k: v.to(device) for k, v in ckpt["best_model"].items()}


class EarlyStopping(Callback):
    """Ends the run (`control.finish`) once `monitor` has not improved for `patience`
    evaluations in a row, unless it is the last epoch anyway; `patience` 0 never stops.
    `message` then says why, for the run's log.

    Keeps its own best value, so it works with or without `KeepBest`."""

    def __init__(self, monitor: str, mode: str, patience: int):
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.best: float | None = None
        self.bad_epochs = 0
        self.message = ""

    def on_eval(self, state: TrainState, control: Control, metrics: dict) -> None:
        value = metrics[self.monitor]
        if _better(value, self.best, self.mode):
            self.best, self.bad_epochs = value, 0
            return
        self.bad_epochs += 1
        if self.patience and self.bad_epochs >= self.patience and state.epoch < state.epochs:
            control.finish = True
            self.message = (f"early stopping: validation {self.monitor} has not improved for "
                            f"{self.bad_epochs} epochs (best {self.best:.4g})")

    def state_dict(self) -> dict:
        return {"bad_epochs": self.bad_epochs}

    def load_state_dict(self, ckpt: dict, device) -> None:
        self.bad_epochs = int(ckpt.get("bad_epochs", 0))
        self.best = ckpt.get("best_metric")
