"""Recurrent networks (Elman RNN, LSTM, GRU) for text classification and numeric sequences.

Text: token ids [B, L] (0 = padding, right-padded) go through a learned embedding
(`padding_idx=0`) and are packed by length, `(x != 0).sum(1)`, so padding never reaches the cell.
Sequences: floats [B, L, C] (or [B, L]) go straight into the cell; they have no padding.

Readout "last" uses the final hidden state of the top layer: for text that is the last real token
(packing stops each row at its length); when bidirectional, the backward direction's final state
(which has read the row back to its first token) is concatenated. "mean" averages the top layer's
outputs over the real (non-padding) steps. Then dropout and a linear layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from models_zoo._checks import kind_error
from models_zoo.schema import param

KINDS = ("text", "sequence")
CELLS = [("lstm", "LSTM"), ("gru", "GRU"), ("rnn", "Elman RNN (tanh)")]
READOUTS = [("last", "Last valid step"), ("mean", "Mean over valid steps")]


@dataclass(frozen=True)
class Config:
    cell: str = param("lstm", label="Cell", choices=CELLS)
    embedding_dim: int = param(64, label="Embedding size", min=2, max=2048, help="text only",
                               applies_when={"kind": ("text",)})
    hidden_size: int = param(64, label="Hidden size", min=1, max=4096)
    num_layers: int = param(1, label="Layers", min=1, max=8)
    bidirectional: bool = param(False, label="Bidirectional")
    dropout: float = param(0.0, label="Dropout", min=0.0, max=0.9,
                           help="between stacked layers and before the output layer")
    readout: str = param("last", label="Readout", choices=READOUTS)


def validate_for(config: Config, info: dict) -> dict[str, str]:
    """Errors (field -> message) for this config on a dataset described by `info`; empty when fine."""
    errors = kind_error(info, KINDS, "RNN / LSTM / GRU")
    if not errors and info.get("kind") == "text" and int(info.get("vocab_size", 0)) < 2:
        errors["architecture"] = "the text dataset has no vocabulary (vocab_size missing)"
    return errors


def build(config: Config, info: dict):
    from models_zoo.nets.rnn import RecurrentNet

    text = info.get("kind") == "text"
    shape = [int(d) for d in info["input_shape"]]
    return RecurrentNet(
        cell=config.cell,
        vocab_size=int(info["vocab_size"]) if text else None,
        embedding_dim=config.embedding_dim,
        in_features=None if text else (shape[1] if len(shape) > 1 else 1),
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        bidirectional=config.bidirectional,
        dropout=config.dropout,
        readout=config.readout,
        num_outputs=int(info["num_outputs"]),
    )
