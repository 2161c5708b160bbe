"""Multi-layer perceptron for feature vectors (tabular data); images and sequences are flattened."""

from __future__ import annotations

from dataclasses import dataclass

from models_zoo._checks import kind_error
from models_zoo.schema import param

KINDS = ("tabular", "image", "sequence")

ACTIVATIONS = [("relu", "ReLU"), ("gelu", "GELU"), ("tanh", "Tanh"), ("sigmoid", "Sigmoid")]
NORMS = [("none", "None"), ("batch", "Batch norm"), ("layer", "Layer norm")]


@dataclass(frozen=True)
class Config:
    hidden_sizes: tuple = param((64, 64), label="Hidden layer sizes", min=1, max=8192,
                                help="comma-separated, e.g. 128,64; empty for a linear model")
    activation: str = param("relu", label="Activation", choices=ACTIVATIONS)
    dropout: float = param(0.0, label="Dropout", min=0.0, max=0.9)
    norm: str = param("none", label="Normalisation", choices=NORMS)


def validate_for(config: Config, info: dict) -> dict[str, str]:
    """Errors (field -> message) for this config on a dataset described by `info`; empty when fine."""
    errors = kind_error(info, KINDS, "MLP")
    if not errors:
        in_features = 1
        for d in info["input_shape"]:
            in_features *= int(d)
        first = config.hidden_sizes[0] if config.hidden_sizes else int(info["num_outputs"])
        if in_features * first > 200_000_000:
            errors["hidden_sizes"] = (f"the first layer would have {in_features} × {first} weights; "
                                      "use a smaller first layer (or a CNN for large images)")
    return errors


def build(config: Config, info: dict):
    """Build the network for a dataset described by `info` (needs `input_shape`, `num_outputs`)."""
    from torch import nn

    act = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[config.activation]
    in_features = 1
    for d in info["input_shape"]:
        in_features *= int(d)
    layers: list = [nn.Flatten()] if len(info["input_shape"]) > 1 else []
    width = in_features
    for hidden in config.hidden_sizes:
        layers.append(nn.Linear(width, hidden))
        if config.norm == "batch":
            layers.append(nn.BatchNorm1d(hidden))
        elif config.norm == "layer":
            layers.append(nn.LayerNorm(hidden))
        layers.append(act())
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = hidden
    layers.append(nn.Linear(width, int(info["num_outputs"])))
    return nn.Sequential(*layers)
