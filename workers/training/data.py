"""Load a dataset cache as tensors, once, and serve batches from it.

The cache is decoded a single time per run: images stay uint8 on the device and are converted
per batch (four times less memory than float32), token ids and feature matrices are moved once.
Nothing reads the original upload during training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models_zoo.kinds import get as get_kind
from models_zoo.kinds import kind_of
from workers.training.filecache import FileRows, default_memory_cap, npy_header


@dataclass
class TensorData:
    info: dict
    X_train: torch.Tensor | None = None
    y_train: torch.Tensor | None = None
    X_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    # The test split, when the dataset has one: evaluated once, at the end, on the final model.
    X_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    # Language modelling: one token stream per split.
    train_stream: torch.Tensor | None = None
    val_stream: torch.Tensor | None = None
    vocab: list | None = None
    val_texts: list[str] = field(default_factory=list)
    device: torch.device = torch.device("cpu")
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    channels_last: bool = False
    # Text: each row's length, `(X != 0).sum(1).clamp(min=1)`, kept on the CPU. Recurrent models
    # pack by length and need it on the host; reading it from the device would sync every step.
    lengths_train: torch.Tensor | None = None
    lengths_val: torch.Tensor | None = None
    lengths_test: torch.Tensor | None = None
    # The cache's size, and whether its inputs stay in their files (larger than the memory cap).
    cache_bytes: int = 0
    file_backed: bool = False

    @property
    def task(self) -> str:
        return self.info["task"]

    @property
    def kind(self) -> str:
        return kind_of(self.info)

    @property
    def has_test(self) -> bool:
        return self.X_test is not None and len(self.X_test) > 0

    @property
    def n_train(self) -> int:
        return len(self.train_stream) if self.kind == "corpus" else len(self.X_train)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A batch as the model takes it (on the device; images to normalised float)."""
        x = x.to(self.device, non_blocking=True)
        if self.kind == "image":
            x = x.float().div_(255.0).sub_(self.mean).div_(self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        return x

    def decode(self, ids) -> str:
        """Token ids of a corpus back to text (char or byte level)."""
        ids = [int(i) for i in ids]
        if self.vocab is None:
            return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")
        return "".join(self.vocab[i] for i in ids if 0 <= i < len(self.vocab))

    def encode(self, text: str) -> list[int]:
        if self.vocab is None:
            return list(text.encode("utf-8"))
        index = {c: i for i, c in enumerate(self.vocab)}
        return [index[c] for c in text if c in index]


def _nbytes(path: Path) -> int:
    shape, dtype, _ = npy_header(path)
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _lengths(X) -> torch.Tensor:
    """Each text row's length, `(X != 0).sum(1).clamp(min=1)`, in blocks (X may be on disk)."""
    out = []
    for i in range(0, len(X), 65_536):
        out.append(torch.as_tensor(np.asarray(X[i : i + 65_536]) != 0).sum(1))
    return (torch.cat(out) if out else torch.zeros(0, dtype=torch.long)).long().clamp(min=1)


def _fits_on_device(nbytes: int, device: torch.device) -> bool:
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes < free * 0.5  # leave the other half for the model, activations and optimizer


STREAMS = {"train": "train_stream", "val": "val_stream"}  # a corpus cache's arrays, by attribute


def load_cache(dataset_dir: str | Path, device: torch.device, memory_cap: int | None = None) -> TensorData:
    """The dataset cache as tensors. `memory_cap`: the bytes of cache this run may hold in memory
    (default: half the machine's RAM); a larger cache stays in its files and its inputs are read
    per batch (workers/training/filecache.py) — labels stay in memory either way."""
    d = Path(dataset_dir)
    info = json.loads((d / "info.json").read_text())
    kind = kind_of(info)
    cap = default_memory_cap() if memory_cap is None else memory_cap

    def array(name: str) -> np.ndarray:
        # allow_pickle=False: the cache holds plain numeric arrays only.
        return np.load(d / f"{name}.npy", allow_pickle=False)

    data = TensorData(info, device=device)
    # The arrays the kind's cache holds (models_zoo.kinds); a corpus is two token streams.
    names = [f[: -len(".npy")] for f in get_kind(kind).cache_files if f.endswith(".npy")]
    if (d / "X_test.npy").is_file():  # a test split (tables, sequences, texts, images)
        names += ["X_test", "y_test"]
    sizes = {name: _nbytes(d / f"{name}.npy") for name in names}
    data.cache_bytes = sum(sizes.values())
    inputs = [n for n in names if not n.startswith("y_")]  # X_* and a corpus's token streams
    data.file_backed = data.cache_bytes > cap
    tokens = kind in ("text", "corpus")
    if data.file_backed:
        for name in inputs:
            setattr(data, STREAMS.get(name, name), FileRows(d / f"{name}.npy", long=tokens, pin=device.type == "cuda"))
        names = [n for n in names if n not in inputs]
    arrays = {STREAMS.get(name, name): array(name) for name in names}
    # Small datasets live on the device for the whole run; large ones stay in (pinned) host
    # memory and move one batch at a time; larger still, in their files (above).
    home = device if not data.file_backed and _fits_on_device(data.cache_bytes, device) else torch.device("cpu")
    if kind == "text":
        for split in ("train", "val", "test")[: 3 if "X_test" in sizes else 2]:
            X = arrays.get(f"X_{split}")
            setattr(data, f"lengths_{split}", _lengths(getattr(data, f"X_{split}") if X is None else X))
    for name, arr in arrays.items():
        t = torch.from_numpy(arr)
        if tokens or (name.startswith("y_") and info["task"] == "classification"):
            t = t.long()  # embedding and cross-entropy indices
        if home.type == "cpu" and device.type == "cuda":
            t = t.pin_memory()
        setattr(data, name, t.to(home))
    if kind == "image":
        norm = info["normalization"]
        data.mean = torch.tensor(norm["mean"], device=device).view(1, -1, 1, 1)
        data.std = torch.tensor(norm["std"], device=device).view(1, -1, 1, 1).clamp(min=1e-6)
    if kind in ("text", "corpus") and (d / "vocab.json").exists():
        data.vocab = json.loads((d / "vocab.json").read_text())
    if (d / "val_texts.json").exists():
        data.val_texts = json.loads((d / "val_texts.json").read_text())
    if data.task == "regression":
        _standardise_targets(data, info["target_normalization"])
    return data


def _standardise_targets(data: TensorData, norm: dict) -> None:
    """Train on standardised targets; metrics are reported in the original units."""
    data.y_train = (data.y_train.float() - norm["mean"]) / norm["std"]
    data.y_val = (data.y_val.float() - norm["mean"]) / norm["std"]
    if data.y_test is not None:
        data.y_test = (data.y_test.float() - norm["mean"]) / norm["std"]
