"""The dataset caches as Hugging Face Trainer datasets (no Django).

text   raw texts + the cache's class indices, tokenized by the model's own tokenizer (the
       cache's word ids belong to the zoo's vocabulary). The raw training texts come from
       `train_texts.json` when the ingest wrote one, else from the original upload kept next to
       the cache (source.*), read and split again exactly as the ingest did (and checked
       against the cached labels).
corpus the cached token streams decoded back to text (char or byte level, lossless), tokenized
       by the model's tokenizer and cut into blocks of `block_size` tokens.
image  the cached uint8 pixels [N, C, H, W], turned into `pixel_values` by the model's image
       processor one batch at a time (memory stays that of the uint8 cache).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


class DataError(ValueError):
    """The dataset cannot feed this model; the message is for the user."""


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def load_info(dataset_dir: Path) -> dict:
    return json.loads((Path(dataset_dir) / "info.json").read_text())


def _labels(d: Path) -> tuple[np.ndarray, np.ndarray]:
    return (np.load(d / "y_train.npy", allow_pickle=False).astype(np.int64),
            np.load(d / "y_val.npy", allow_pickle=False).astype(np.int64))


def raw_texts(dataset_dir: Path, info: dict) -> tuple[list[str], list[str]]:
    """(training texts, validation texts) in the cache's row order."""
    d = Path(dataset_dir)
    y_train, y_val = _labels(d)
    if (d / "train_texts.json").is_file() and (d / "val_texts.json").is_file():
        train, val = json.loads((d / "train_texts.json").read_text()), json.loads((d / "val_texts.json").read_text())
        if len(train) == len(y_train) and len(val) == len(y_val):
            return train, val
    sources = sorted(d.glob("source.*"))
    if not sources:
        raise DataError("Hugging Face fine-tuning tokenizes the raw texts, and this dataset's original file is no "
                        "longer stored; upload the dataset again")
    from workers.datasets.common import encode_labels, seeded_split
    from workers.datasets.text import _records

    # Caches without train_texts.json predate split columns: their split was the seeded one.
    _fmt, _cols, _text_col, label_col, _split, texts, labels, _codes, where = _records(
        sources[0], info.get("text_column"), info.get("label_column"), info.get("split_column"))
    _task, y, classes = encode_labels(labels, where, label_col, "classification", ("classification",))
    train_idx, val_idx = seeded_split(len(texts), float(info["val_fraction"]), int(info.get("split_seed", 0)), y)
    if (classes != info.get("classes") or not np.array_equal(y[train_idx], y_train)
            or not np.array_equal(y[val_idx], y_val)):
        raise DataError("the dataset's original file does not match its cache any more; upload the dataset again")
    return [texts[i] for i in train_idx], [texts[i] for i in val_idx]


def text_classification(dataset_dir: Path, info: dict, tokenizer, max_length: int):
    d = Path(dataset_dir)
    train_texts, val_texts = raw_texts(d, info)
    y_train, y_val = _labels(d)

    def encode(texts: list[str], y: np.ndarray) -> ListDataset:
        enc = tokenizer(texts, truncation=True, max_length=max_length)
        return ListDataset([{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                             "labels": int(y[i])} for i in range(len(texts))])

    return encode(train_texts, y_train), encode(val_texts, y_val), val_texts


def text_test_split(dataset_dir: Path, tokenizer, max_length: int) -> ListDataset | None:
    """The test split of a text cache (its raw texts, tokenized by the model's tokenizer), or None."""
    d = Path(dataset_dir)
    if not (d / "test_texts.json").is_file() or not (d / "y_test.npy").is_file():
        return None
    texts = json.loads((d / "test_texts.json").read_text())
    y = np.load(d / "y_test.npy", allow_pickle=False).astype(np.int64)
    if not texts or len(texts) != len(y):
        return None
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return ListDataset([{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                         "labels": int(y[i])} for i in range(len(texts))])


def corpus_text(dataset_dir: Path, info: dict) -> tuple[str, str]:
    """The training and validation text of a corpus cache, decoded from its token ids."""
    d = Path(dataset_dir)
    streams = [np.load(d / f"{s}.npy", allow_pickle=False) for s in ("train", "val")]
    if (d / "vocab.json").is_file():  # character level
        vocab = json.loads((d / "vocab.json").read_text())
        table = np.asarray(vocab, dtype=object)
        return tuple("".join(table[s.astype(np.int64)]) for s in streams)  # type: ignore[return-value]
    return tuple(s.astype(np.uint8).tobytes().decode("utf-8", errors="replace") for s in streams)  # type: ignore


def _tokenize_long(tokenizer, text: str, piece_chars: int = 100_000) -> list[int]:
    """Token ids of a long text, tokenized in line-aligned pieces (bounded memory)."""
    ids: list[int] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + piece_chars)
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        ids.extend(tokenizer(text[start:end], add_special_tokens=False)["input_ids"])
        start = end
    return ids


def causal_lm(dataset_dir: Path, info: dict, tokenizer, block_size: int):
    train_text, val_text = corpus_text(dataset_dir, info)

    def blocks(text: str, split: str) -> ListDataset:
        ids = _tokenize_long(tokenizer, text)
        n = len(ids) // block_size
        if n < 1:
            raise DataError(f"the {split} text is {len(ids)} tokens for this tokenizer; the block size "
                            f"({block_size}) needs at least that many; lower the block size")
        arr = torch.tensor(ids[: n * block_size], dtype=torch.long).view(n, block_size)
        return ListDataset([{"input_ids": row, "labels": row} for row in arr])

    return blocks(train_text, "training"), blocks(val_text, "validation"), val_text


class ImageArrays(torch.utils.data.Dataset):
    def __init__(self, X: np.ndarray, y: np.ndarray):
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.X[i], "labels": int(self.y[i])}


def image_classification(dataset_dir: Path, info: dict):
    d = Path(dataset_dir)
    y_train, y_val = _labels(d)
    # mmap: the pixels are read per batch, not loaded whole.
    X_train = np.load(d / "X_train.npy", mmap_mode="r", allow_pickle=False)
    X_val = np.load(d / "X_val.npy", mmap_mode="r", allow_pickle=False)
    return ImageArrays(X_train, y_train), ImageArrays(X_val, y_val)


def image_test_split(dataset_dir: Path) -> ImageArrays | None:
    """The test split of an image cache, or None."""
    d = Path(dataset_dir)
    if not (d / "X_test.npy").is_file():
        return None
    y = np.load(d / "y_test.npy", allow_pickle=False).astype(np.int64)
    return ImageArrays(np.load(d / "X_test.npy", mmap_mode="r", allow_pickle=False), y) if len(y) else None


class ImageCollator:
    """uint8 [C, H, W] images → the processor's pixel_values, with the model's channel count."""

    def __init__(self, processor, channels: int):
        self.processor, self.channels = processor, channels

    def pixels(self, images: list[np.ndarray]) -> torch.Tensor:
        out = []
        for im in images:
            im = np.asarray(im)
            if im.shape[0] == 1 and self.channels == 3:
                im = np.repeat(im, 3, axis=0)
            elif im.shape[0] == 3 and self.channels == 1:
                im = im.mean(axis=0, keepdims=True).round().astype(np.uint8)
            out.append(np.array(im.transpose(1, 2, 0), copy=True))  # HWC, writable (the cache is mmapped)
        kwargs = {"input_data_format": "channels_last", "return_tensors": "pt"}
        return self.processor(images=out, **kwargs)["pixel_values"]

    def __call__(self, batch: list[dict]) -> dict:
        return {"pixel_values": self.pixels([b["image"] for b in batch]),
                "labels": torch.tensor([b["labels"] for b in batch], dtype=torch.long)}
