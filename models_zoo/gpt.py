"""GPT-style decoder-only language model for text corpora (after nanoGPT).

Token ids [B, T] (T ≤ block size) → token + learned position embeddings → pre-norm blocks of causal
self-attention (`scaled_dot_product_attention(is_causal=True)`) and a 4× GELU MLP → layer norm →
logits [B, T, vocab] through the token embedding matrix itself (tied input/output embeddings: the
weights are stored once). `generate()` samples continuations, cropping the context to the block
size. The training loop reads `block_size` from this config for its windows.
"""

from __future__ import annotations

from dataclasses import dataclass

from models_zoo._checks import heads_error, kind_error
from models_zoo.schema import param

KINDS = ("corpus",)


@dataclass(frozen=True)
class Config:
    layers: int = param(2, label="Layers", min=1, max=48)
    heads: int = param(4, label="Attention heads", min=1, max=64, help="must divide the width")
    width: int = param(64, label="Width (embedding size)", min=8, max=4096)
    block_size: int = param(64, label="Block size (context length)", min=2, max=8192,
                            help="tokens the model sees at once; training windows are this long")
    dropout: float = param(0.0, label="Dropout", min=0.0, max=0.9)

    def check(self) -> dict[str, str]:
        return heads_error(self.heads, self.width)


def validate_for(config: Config, info: dict) -> dict[str, str]:
    """Errors (field -> message) for this config on a dataset described by `info`; empty when fine."""
    errors = kind_error(info, KINDS, "GPT decoder")
    if errors:
        return errors
    errors.update(config.check())
    if int(info.get("vocab_size", 0)) < 2:
        errors["architecture"] = "the corpus has no vocabulary (vocab_size missing)"
    return errors


def build(config: Config, info: dict):
    from models_zoo.nets.gpt import GPT

    return GPT(vocab_size=int(info["vocab_size"]), block_size=config.block_size, layers=config.layers,
               heads=config.heads, width=config.width, dropout=config.dropout)
