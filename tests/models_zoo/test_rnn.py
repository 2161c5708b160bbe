"""Recurrent text models: packing by length gives each row exactly what it would get alone, and
the lengths the training loop passes from the host change nothing."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import models_zoo  # noqa: E402

INFO = {"kind": "text", "task": "classification", "input_shape": [9], "vocab_size": 30, "max_len": 9,
        "num_outputs": 3}


def _texts():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(1, 30, (7, 9), generator=g)
    for i, n in enumerate([9, 3, 5, 1, 5, 7, 0]):  # right padding; ties; a full row; an empty text
        x[i, n:] = 0
    return x


@pytest.mark.parametrize("cfg", [
    {"cell": "gru"},
    {"cell": "lstm", "bidirectional": True},
    {"cell": "lstm", "bidirectional": True, "num_layers": 2, "readout": "mean"},
    {"cell": "rnn", "readout": "mean"},
])
def test_each_row_gets_what_it_would_alone_with_or_without_host_lengths(cfg):
    torch.manual_seed(0)
    model = models_zoo.build_model("rnn", {"hidden_size": 6, "embedding_dim": 5, **cfg}, INFO).eval()
    assert model.takes_lengths
    x = _texts()
    lengths = (x != 0).sum(1).clamp(min=1)
    with torch.no_grad():
        batch = model(x)
        with_lengths = model(x, lengths=lengths)
        alone = torch.cat([model(row[None, : int(n)]) for row, n in zip(x, lengths)])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(with_lengths, batch, rtol=0, atol=0)
    assert torch.isfinite(batch).all()


def test_host_lengths_train_like_device_lengths():
    torch.manual_seed(0)
    model = models_zoo.build_model("rnn", {"cell": "lstm", "hidden_size": 6, "embedding_dim": 5,
                                           "bidirectional": True}, INFO)
    x, y = _texts(), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    grads = []
    for kwargs in ({}, {"lengths": (x != 0).sum(1).clamp(min=1)}):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x, **kwargs), y).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_sequence_models_take_no_lengths():
    info = {"kind": "sequence", "task": "classification", "input_shape": [16, 1], "num_outputs": 3}
    assert not models_zoo.build_model("rnn", {}, info).takes_lengths
