"""1-D convolutional network for numeric sequences.

Input is a float batch [B, L, C] (the sequence kind's `input_shape` is [L, 1]; [B, L] is taken as
one channel). Each stage is conv (same padding) → [batch norm] → ReLU → [2× pooling]; a global
average or max over time then feeds a linear layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from models_zoo._checks import kind_error, odd_kernel_error
from models_zoo.schema import param

KINDS = ("sequence",)
POOLING = [("max", "Max pooling"), ("avg", "Average pooling"), ("none", "None")]
GLOBAL_POOLING = [("avg", "Average"), ("max", "Max")]


@dataclass(frozen=True)
class Config:
    channels: tuple = param((32, 64), label="Conv channels per stage", min=1, max=1024, max_items=8,
                            help="comma-separated, e.g. 32,64; each stage is followed by 2× pooling")
    kernel_size: int = param(5, label="Kernel size", min=1, max=31, help="odd")
    pooling: str = param("max", label="Pooling between stages", choices=POOLING)
    global_pooling: str = param("avg", label="Global pooling over time", choices=GLOBAL_POOLING)
    batch_norm: bool = param(True, label="Batch norm")
    dropout: float = param(0.0, label="Dropout", min=0.0, max=0.9, help="before the output layer")

    def check(self) -> dict[str, str]:
        errors = odd_kernel_error(self.kernel_size)
        if not self.channels:
            errors["channels"] = "give at least one stage, e.g. 32,64"
        return errors


def validate_for(config: Config, info: dict) -> dict[str, str]:
    """Errors (field -> message) for this config on a dataset described by `info`; empty when fine."""
    errors = kind_error(info, KINDS, "1-D CNN")
    if errors:
        return errors
    errors.update(config.check())
    length = int(info["input_shape"][0])
    stages = 0 if config.pooling == "none" else len(config.channels)
    if "channels" not in errors and length < 2**stages:
        errors["channels"] = (f"{stages} pooling stages need sequences of at least {2**stages} steps; this "
                              f"dataset's have {length} (use fewer stages or no pooling)")
    return errors


def build(config: Config, info: dict):
    from torch import nn

    from models_zoo.nets.common import ChannelsFirst

    shape = [int(d) for d in info["input_shape"]]
    in_channels = shape[1] if len(shape) > 1 else 1
    pool = {"max": nn.MaxPool1d, "avg": nn.AvgPool1d}.get(config.pooling)
    layers: list = []
    width = in_channels
    for ch in config.channels:
        layers.append(nn.Conv1d(width, ch, config.kernel_size, padding=config.kernel_size // 2,
                                bias=not config.batch_norm))
        if config.batch_norm:
            layers.append(nn.BatchNorm1d(ch))
        layers.append(nn.ReLU())
        if pool is not None:
            layers.append(pool(2))
        width = ch
    layers.append(nn.AdaptiveAvgPool1d(1) if config.global_pooling == "avg" else nn.AdaptiveMaxPool1d(1))
    layers.append(nn.Flatten())
    if config.dropout > 0:
        layers.append(nn.Dropout(config.dropout))
    layers.append(nn.Linear(width, int(info["num_outputs"])))
    return ChannelsFirst(nn.Sequential(*layers))
