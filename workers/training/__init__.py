"""The training runtime: plain PyTorch, no Django. Entry point: `run(spec, callbacks, control)`."""

from workers.training.callbacks import Callback, Control, TrainState
from workers.training.loop import run
from workers.training.spec import TrainResult, TrainSpec

__all__ = ["Callback", "Control", "TrainResult", "TrainSpec", "TrainState", "run"]
