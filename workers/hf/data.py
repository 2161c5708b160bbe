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


# -- instruction / chat ------------------------------------------------------------------------------
# For a tokenizer without a chat template: plain markers, the end-of-sequence token closing each
# reply (so a fine-tuned model learns to stop). It is saved with the tokenizer in model.zip.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### User:\n{{ m['content'] }}\n\n"
    "{% else %}### Assistant:\n{{ m['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


def ensure_chat_template(tokenizer) -> bool:
    """Give the tokenizer the plain template when it has none; True when it had its own."""
    if getattr(tokenizer, "chat_template", None):
        return True
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return False


def read_chat(path: Path) -> list[list[dict]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["messages"] for line in f if line.strip()]


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def chat_segments(tokenizer, messages: list[dict]) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, is an assistant reply) pieces, in order: each reply is
    what the template adds after the prompt for it (the reply and its end-of-turn marker)."""
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], True)
        full = _render(tokenizer, messages[: i + 1], False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise DataError("the tokenizer's chat template does not render a conversation turn by turn "
                            "(a prefix of the conversation is not a prefix of its text); it cannot be used to "
                            "mask the prompts")
        pieces += [(prompt[len(done):], False), (full[len(prompt):], True)]
        done = full
    rest = _render(tokenizer, messages, False)[len(done):]
    if rest:
        pieces.append((rest, False))
    return [(t, a) for t, a in pieces if t]


def encode_chat(tokenizer, messages: list[dict], max_length: int) -> dict:
    """input_ids, attention_mask and labels of one conversation: labels are the token ids on the
    assistant's replies and -100 everywhere else (no loss on the prompts), cut at max_length."""
    ids: list[int] = []
    labels: list[int] = []
    for text, reply in chat_segments(tokenizer, messages):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if reply else [-100] * len(piece)
    ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


class ChatCollator:
    """Pads a batch of conversations: input ids with the pad token, labels with -100."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict]) -> dict:
        n = max(len(b["input_ids"]) for b in batch)

        def pad(key: str, value: int) -> torch.Tensor:
            return torch.tensor([b[key] + [value] * (n - len(b[key])) for b in batch], dtype=torch.long)

        return {"input_ids": pad("input_ids", self.pad_id), "attention_mask": pad("attention_mask", 0),
                "labels": pad("labels", -100)}


def chat(dataset_dir: Path, tokenizer, max_length: int):
    """(train, validation, held-out prompts, conversations dropped) of a chat cache. A conversation
    whose replies all fall past max_length teaches nothing and is left out (counted)."""
    d = Path(dataset_dir)
    dropped = 0

    def encode(split: str) -> ListDataset:
        nonlocal dropped
        rows = []
        for messages in read_chat(d / f"{split}.jsonl"):
            row = encode_chat(tokenizer, messages, max_length)
            if any(label != -100 for label in row["labels"]):
                rows.append(row)
            else:
                dropped += 1
        if not rows:
            raise DataError(f"no {split} conversation has an assistant reply within the first {max_length} "
                            "tokens; raise the block size")
        return ListDataset(rows)

    train, val = encode("train"), encode("val")
    prompts = []
    for messages in read_chat(d / "val.jsonl"):
        first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompts.append({"messages": messages[:first], "reference": messages[first]["content"]})
    return train, val, prompts, dropped
