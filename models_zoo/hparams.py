"""Training hyperparameters shared by the web form and the training runtime (no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from models_zoo.schema import param

OPTIMIZERS = [
    ("sgd", "SGD"),
    ("sgd_momentum", "SGD + momentum"),
    ("adam", "Adam"),
    ("adamw", "AdamW"),
    ("rmsprop", "RMSprop"),
]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = param(20, label="Epochs", min=1, max=10_000)
    batch_size: int = param(64, label="Batch size", min=1, max=65_536)
    learning_rate: float = param(1e-3, label="Learning rate", min=1e-7, max=10.0)
    optimizer: str = param("adam", label="Optimizer", choices=OPTIMIZERS)
    momentum: float = param(0.9, label="Momentum", min=0.0, max=0.999, help="SGD + momentum and RMSprop")
    weight_decay: float = param(0.0, label="Weight decay", min=0.0, max=1.0)
    seed: int = param(0, label="Seed", min=0, max=2**31 - 1)
