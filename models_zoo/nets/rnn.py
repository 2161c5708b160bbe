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

    @property
    def takes_lengths(self) -> bool:
        """True when `forward` accepts the rows' lengths as a CPU tensor (text models)."""
        return self.embedding is not None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """`lengths` (text only): each row's `(x != 0).sum(1).clamp(min=1)` as a CPU tensor.

        Packing needs the lengths on the host. Without them they are copied from the device, a
        device-to-host sync; the training loop passes the CPU copy its data layer keeps instead.
        """
        if self.embedding is None:
            if x.dim() == 2:
                x = x.unsqueeze(-1)
            out, h = self.rnn(x)
            features = out.mean(1) if self.readout == "mean" else self._last(h)
            return self.head(self.dropout(features))

        # A row of padding only still gets one step (of the zero padding embedding).
        on_device = (x != 0).sum(1).clamp(min=1)
        if lengths is None:
            lengths = on_device.cpu()  # a device-to-host sync (inference; training passes them)
        # Sorted here rather than by pack_padded_sequence(enforce_sorted=False), which copies its
        # sort order host-to-device (a stream sync on CUDA) and, unpacking, back again. The order
        # is computed on the device; the sorted lengths on the host are the same whatever the
        # order among equal lengths.
        order = torch.argsort(on_device, descending=True, stable=True)
        unorder = torch.argsort(order)
        packed = pack_padded_sequence(self.embedding(x).index_select(0, order),
                                      torch.sort(lengths.to(torch.int64), descending=True).values,
                                      batch_first=True, enforce_sorted=True)
        out, h = self.rnn(packed)
        if self.readout == "mean":
            out, _ = pad_packed_sequence(out, batch_first=True)  # zeros after each row's length
            features = out.sum(1).index_select(0, unorder) / on_device.to(out.dtype)[:, None]
        else:
            features = self._last(h).index_select(0, unorder)
        return self.head(self.dropout(features))

    def _last(self, h) -> torch.Tensor:
        if isinstance(h, tuple):  # LSTM: (h_n, c_n)
            h = h[0]
        # h_n is [layers * directions, B, H]; the top layer's directions are the last ones.
        return torch.cat(list(h[-self.directions:]), dim=-1)
