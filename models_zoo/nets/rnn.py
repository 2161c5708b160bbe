"""The recurrent classifier/regressor behind `models_zoo.rnn` (see there for the readout)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentNet(nn.Module):
    def __init__(self, *, cell: str, vocab_size: int | None, embedding_dim: int, in_features: int | None,
                 hidden_size: int, num_layers: int, bidirectional: bool, dropout: float, readout: str,
                 num_outputs: int):
        super().__init__()
        self.readout = readout
        self.directions = 2 if bidirectional else 1
        # Text when there is a vocabulary; otherwise float features go straight in.
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0) if vocab_size else None
        self.rnn = CELLS[cell](
            input_size=embedding_dim if vocab_size else in_features,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,  # torch applies it between layers only
            bidirectional=bidirectional,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * self.directions, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is None:
            if x.dim() == 2:
                x = x.unsqueeze(-1)
            out, h = self.rnn(x)
            features = out.mean(1) if self.readout == "mean" else self._last(h)
            return self.head(self.dropout(features))

        # A row of padding only still gets one step (of the zero padding embedding).
        lengths = (x != 0).sum(1).clamp(min=1)
        # pack_padded_sequence wants the lengths on the CPU: one small device-to-host copy per batch.
        packed = pack_padded_sequence(self.embedding(x), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.rnn(packed)
        if self.readout == "mean":
            out, _ = pad_packed_sequence(out, batch_first=True)  # zeros after each row's length
            features = out.sum(1) / lengths.to(out.dtype)[:, None]
        else:
            features = self._last(h)
        return self.head(self.dropout(features))

    def _last(self, h) -> torch.Tensor:
        if isinstance(h, tuple):  # LSTM: (h_n, c_n)
            h = h[0]
        # h_n is [layers * directions, B, H]; the top layer's directions are the last ones.
        return torch.cat(list(h[-self.directions:]), dim=-1)
