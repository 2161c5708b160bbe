"""The encoder classifier/regressor behind `models_zoo.transformer` (see there for the design)."""

from __future__ import annotations

import torch
from torch import nn

from models_zoo.nets.common import sinusoidal_table


class EncoderClassifier(nn.Module):
    def __init__(self, *, vocab_size: int | None, in_features: int | None, max_len: int, layers: int, heads: int,
                 width: int, ffn_size: int, dropout: float, positional: str, pooling: str, num_outputs: int):
        super().__init__()
        self.max_len = max_len
        self.pooling = pooling
        if vocab_size:
            self.embed: nn.Module = nn.Embedding(vocab_size, width, padding_idx=0)
        else:
            self.embed = nn.Linear(in_features, width)
        self.text = bool(vocab_size)
        positions = max_len + (1 if pooling == "cls" else 0)
        if positional == "learned":
            self.pos = nn.Parameter(torch.zeros(positions, width))
            nn.init.normal_(self.pos, std=0.02)
        else:
            # Recomputed on build, so it is not saved with the weights.
            self.register_buffer("pos", sinusoidal_table(positions, width), persistent=False)
        self.cls = nn.Parameter(torch.zeros(1, 1, width)) if pooling == "cls" else None
        self.drop_in = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(width, heads, ffn_size, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        # No nested tensors: they only apply to post-norm layers and would warn.
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)
        self.drop_out = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, : self.max_len]
        if self.text:
            pad = x == 0
            h = self.embed(x)
        else:
            if x.dim() == 2:
                x = x.unsqueeze(-1)
            pad = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
            h = self.embed(x.to(self.embed.weight.dtype))
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1).to(h.dtype), h], dim=1)  # shape[0]: traced, not a constant
            pad = torch.cat([torch.zeros_like(pad[:, :1]), pad], dim=1)
        else:
            # A row of padding only would leave attention nothing to attend to (NaN): let it see its first slot.
            pad[:, 0] &= ~pad.all(1)
        h = self.drop_in(h + self.pos[: h.shape[1]].to(h.dtype))
        h = self.encoder(h, src_key_padding_mask=pad if self.text else None)
        if self.cls is not None:
            features = h[:, 0]
        else:
            keep = (~pad).unsqueeze(-1).to(h.dtype)
            features = (h * keep).sum(1) / keep.sum(1)
        return self.head(self.drop_out(features))
