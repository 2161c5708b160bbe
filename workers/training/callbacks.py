"""The callback interface between the training loop and whoever watches it.

Shaped like transformers' `TrainerCallback`: every hook is a no-op by default and receives
the shared `TrainState` plus a `Control` whose `should_stop` a callback may set (the cancel
check does). Hooks run on the training thread, so they must return quickly: no network or
database calls here; buffer and let another thread do the I/O.
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


@dataclass
class Control:
    should_stop: bool = False


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
