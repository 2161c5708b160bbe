"""Pieces shared by several families."""

from __future__ import annotations

import math

import torch
from torch import nn


class ChannelsFirst(nn.Module):
    """Takes a sequence batch [B, L, C] (or [B, L] as one channel) to [B, C, L] for `net`."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        return self.net(x.transpose(1, 2))


def sinusoidal_table(length: int, width: int) -> torch.Tensor:
    """The fixed positional encoding of "Attention Is All You Need": [length, width]."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: width // 2])
    return table
