"""Caches larger than the memory cap (workers/training/filecache.py): rows read from the .npy
files equal the loaded arrays, the prefetch thread hands errors over and stops when the loop
does, and a run reading its cache from disk trains exactly as one holding it in memory."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from tests import datagen
from workers.training.filecache import FileRows, Prefetch, npy_header


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, np.uint16])
def test_rows_slices_and_windows_equal_the_array(tmp_path, dtype):
    arr = (np.arange(50 * 3 * 4 * 4) % 251).astype(dtype).reshape(50, 3, 4, 4)
    np.save(tmp_path / "X.npy", arr)
    rows = FileRows(tmp_path / "X.npy")
    assert len(rows) == 50 and npy_header(tmp_path / "X.npy")[:2] == ((50, 3, 4, 4), np.dtype(dtype))
    assert np.array_equal(rows[7].numpy(), arr[7])
    assert np.array_equal(rows[10:23].numpy(), arr[10:23]) and rows[49:60].shape[0] == 1
    idx = torch.tensor([3, 49, 0, 3, 17])
    assert np.array_equal(rows[idx].numpy(), arr[idx.numpy()])
    stream = (np.arange(1000) % 200).astype(dtype)
    np.save(tmp_path / "s.npy", stream)
    tokens = FileRows(tmp_path / "s.npy", long=True)
    w = tokens.windows(torch.tensor([0, 5, 990]), 10)
    assert w.dtype == torch.long and w.tolist() == [stream[s : s + 10].tolist() for s in (0, 5, 990)]


def test_a_truncated_cache_file_is_an_error_not_garbage(tmp_path):
    np.save(tmp_path / "X.npy", np.ones((20, 8), dtype=np.float32))
    rows = FileRows(tmp_path / "X.npy")
    with open(tmp_path / "X.npy", "r+b") as f:
        f.truncate(rows.offset + 10 * rows.row_bytes)
    assert rows[9].sum() == 8
    with pytest.raises(OSError, match="ended early"):
        rows[15]


def test_prefetch_yields_in_order_raises_errors_and_stops_when_closed():
    assert list(Prefetch(iter(range(100)))) == list(range(100))

    def failing():
        yield 1
        raise ValueError("cache file vanished")

    with pytest.raises(ValueError, match="vanished"):
        list(Prefetch(failing()))

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    it = iter(Prefetch(endless(), depth=2))
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    it.close()  # the training loop stopped (cancel, early stopping)
    time.sleep(0.3)
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count and threading.active_count() <= before


CASES = {
    "image": (lambda p: datagen.digits_png_zip(p / "d.zip", limit=300), {"image_size": 16}, "cnn", {}),
    "text": (lambda p: datagen.sentiment_csv(p / "x.csv", n=240), {}, "rnn",
             {"cell": "gru", "hidden_size": 16, "embedding_dim": 16}),
    "corpus": (lambda p: datagen.repetitive_corpus(p / "c.txt", repeats=30), {}, "gpt",
               {"layers": 1, "width": 32, "heads": 2, "block_size": 16}),
    "tabular": (lambda p: datagen.table_csv(p / "t.csv", n=240), {}, "mlp", {}),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_cache_read_from_disk_trains_exactly_like_one_in_memory(tmp_path, kind):
    from workers.datasets import ingest
    from workers.training import TrainSpec, run
    from workers.training.callbacks import Callback

    make, options, arch, model_config = CASES[kind]
    ingest(kind, make(tmp_path), tmp_path / "ds", options)

    class Said(Callback):
        def __init__(self):
            self.texts = []

        def on_message(self, state, control, level, text):
            self.texts.append(text)

    results, said = [], Said()
    for cap, callbacks in ((None, []), (0, [said])):  # 0: every cache is larger than the cap
        spec = TrainSpec(arch, model_config, {"epochs": 2, "batch_size": 32}, str(tmp_path / "ds"),
                         str(tmp_path / f"job-{cap}"), device="cpu", cache_memory_bytes=cap)
        result = run(spec, callbacks)
        assert result.status == "succeeded"
        results.append({k: v for k, v in result.metrics.items() if k not in ("samples_per_s", "train_seconds")})
    assert results[0] == results[1]
    assert any("read from disk" in t for t in said.texts)
    weights = [torch.load(sorted((tmp_path / f"job-{cap}" / "checkpoints").glob("*.pt"))[-1],
                          weights_only=True)["model"] for cap in (None, 0)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
