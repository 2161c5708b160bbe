"""Multi-layer perceptron for feature vectors (tabular data)."""

from __future__ import annotations

from dataclasses import dataclass

from models_zoo.schema import param

ACTIVATIONS = [("relu", "ReLU"), ("gelu", "GELU"), ("tanh", "Tanh"), ("sigmoid", "Sigmoid")]
NORMS = [("none", "None"), ("batch", "Batch norm"), ("layer", "Layer norm")]


@dataclass(frozen=True)
class Config:
    hidden_sizes: tuple = param((64, 64), label="Hidden layer sizes", min=1, max=8192,
                                help="comma-separated, e.g. 128,64; empty for a linear model")
    activation: str = param("relu", label="Activation", choices=ACTIVATIONS)
    dropout: float = param(0.0, label="Dropout", min=0.0, max=0.9)
    norm: str = param("none", label="Normalisation", choices=NORMS)


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
