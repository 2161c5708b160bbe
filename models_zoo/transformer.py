"""Transformer encoder for text classification and numeric sequences.

Text: token ids [B, L] (0 = padding) through a learned embedding (`padding_idx=0`); padding is
hidden from attention with a key padding mask. Sequences: floats [B, L, C] (or [B, L]) through a
linear projection; no mask. Positions are added (fixed sinusoidal or learned, up to the dataset's
length; longer inputs are cut to it). Pre-norm encoder layers (GELU, `batch_first=True`), a final
layer norm, then pooling: the mean over non-padding positions, or a learned [CLS] token
prepended to every row. Then dropout and a linear layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from models_zoo._checks import heads_error, kind_error
from models_zoo.schema import param

KINDS = ("text", "sequence")
POSITIONAL = [("sinusoidal", "Sinusoidal (fixed)"), ("learned", "Learned")]
POOLING = [("mean", "Mean over non-padding tokens"), ("cls", "[CLS] token")]


@dataclass(frozen=True)
class Config:
    layers: int = param(2, label="Layers", min=1, max=24)
    heads: int = param(4, label="Attention heads", min=1, max=64, help="must divide the width")
    width: int = param(64, label="Width (d_model)", min=8, max=4096)
    ffn_size: int = param(128, label="Feed-forward size", min=8, max=16384)
    dropout: float = param(0.1, label="Dropout", min=0.0, max=0.9)
    positional: str = param("sinusoidal", label="Positional encoding", choices=POSITIONAL)
    pooling: str = param("mean", label="Pooling", choices=POOLING)

    def check(self) -> dict[str, str]:
        return heads_error(self.heads, self.width)


def validate_for(config: Config, info: dict) -> dict[str, str]:
    """Errors (field -> message) for this config on a dataset described by `info`; empty when fine."""
    errors = kind_error(info, KINDS, "Transformer encoder")
    if errors:
        return errors
    errors.update(config.check())
    if info.get("kind") == "text" and int(info.get("vocab_size", 0)) < 2:
        errors["architecture"] = "the text dataset has no vocabulary (vocab_size missing)"
    return errors


def build(config: Config, info: dict):
    from models_zoo.nets.transformer import EncoderClassifier

    text = info.get("kind") == "text"
    shape = [int(d) for d in info["input_shape"]]
    return EncoderClassifier(
        vocab_size=int(info["vocab_size"]) if text else None,
        in_features=None if text else (shape[1] if len(shape) > 1 else 1),
        max_len=int(info.get("max_len") or shape[0]),
        layers=config.layers,
        heads=config.heads,
        width=config.width,
        ffn_size=config.ffn_size,
        dropout=config.dropout,
        positional=config.positional,
        pooling=config.pooling,
        num_outputs=int(info["num_outputs"]),
    )
