"""Text-classification ingest: CSV/TSV or JSON Lines with a text column and a label column →
padded token-id arrays plus a word vocabulary (pure Python + numpy, no Django, no torch).

Input
    CSV/TSV (a header row naming the columns; the delimiter from the extension, or sniffed from
    the first line when the name says nothing, e.g. an upload stored under a generated name), or
    JSON Lines (one object per line; `.json` may also hold one array of objects). Which of the
    two is decided by the extension when it is a known one, else by the content (a first
    character `{` or `[` means JSON); a known extension whose content is the other format is an
    error that says so.
    Columns: `text_column` / `label_column` when given (they must exist), else a column named
    "text" (then "sentence", "review", "content") and one named "label" (then "class",
    "category", "target", "sentiment"), else the first and the last column.
    Split: a column (a field, in JSON) named "split" (any case; the `split_column` option may name
    another) says each row's split (train, val / validation, test); without one the split is
    seeded, stratified per class, with an optional test fraction.

Tokenizer (built here, from the training split only; written as vocab.json)
    lower-cased, regex `\\w+(?:'\\w+)*|[^\\w\\s]` (words, with inner apostrophes, and single
    punctuation marks). Ids: 0 = <pad>, 1 = <unk>, then the training tokens by frequency
    (ties alphabetical), at most MAX_VOCAB in all. The sequence length (info["max_len"]) is
    the 95th percentile of the training texts' token counts, capped at MAX_LEN; longer texts
    keep their first max_len tokens (info["truncated"] counts them). Every text has at least
    one token (an empty text is an error), so no row is all padding.

Output (written to `<out_dir>.partial`, renamed into place; on any failure it is removed)
    X_train.npy X_val.npy   int32 [N, max_len]   token ids, right-padded with 0
    len_train.npy len_val.npy  int32 [N]          tokens before padding
    y_train.npy y_val.npy   int64 [N]            class indices
    vocab.json   the token of each id
    train_texts.json val_texts.json   the raw texts in X_train's / X_val's row order (sample
    predictions show them; models with their own tokenizer train on them)      info.json
    X_test.npy len_test.npy y_test.npy test_texts.json   the same, when there is a test split
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from workers.datasets import tabular
from workers.datasets.common import (
    IngestError,
    atomic_dir,
    check_fractions,
    class_info,
    encode_labels,
    find_split_column,
    pick_column,
    split_code,
    split_rows,
)
from workers.datasets.tabular import (
    _decoded_lines,
    human_size,
    iter_table,
)

TOKEN_PATTERN = r"\w+(?:'\w+)*|[^\w\s]"
_TOKEN = re.compile(TOKEN_PATTERN)
PAD, UNK = "<pad>", "<unk>"
MAX_VOCAB = 30_000
MAX_LEN = 256
LENGTH_PERCENTILE = 95
MAX_ROWS = 2_000_000
MAX_JSON_ARRAY_BYTES = 256 * 1024**2
PREVIEW_ROWS = 12
PREVIEW_CHARS = 300

CSV_SUFFIXES = {".csv", ".tsv", ".tab"}
JSON_SUFFIXES = {".jsonl", ".ndjson", ".json"}
TEXT_NAMES = ("text", "sentence", "review", "content")
LABEL_NAMES = ("label", "class", "category", "target", "sentiment")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _first_char(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4096)
    return head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")[:1]


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    first = _first_char(path)
    looks_json = first in ("{", "[")
    if suffix in CSV_SUFFIXES:
        if looks_json:
            raise IngestError(f"the file is named {suffix} but its first line is JSON, not a table; "
                              f"name it .jsonl if it holds one JSON object per line")
        return "csv"
    if suffix in JSON_SUFFIXES:
        if first and not looks_json:
            raise IngestError(f"the file is named {suffix} but line 1 does not start with '{{' (a JSON object); "
                              f"is it a CSV file? then name it .csv")
        return "json"
    return "json" if looks_json else "csv"


def _read_json(path: Path) -> tuple[list[str], list[dict], list[str]]:
    """(column names, objects, where each object is) from JSON Lines or one JSON array."""
    if path.stat().st_size == 0:
        raise IngestError("the file is empty")
    if _first_char(path) == "[":
        if path.stat().st_size > MAX_JSON_ARRAY_BYTES:
            raise IngestError(f"a single JSON array may be at most {human_size(MAX_JSON_ARRAY_BYTES)}; "
                              f"use JSON Lines (one object per line) for larger files")
        text = "".join(_decoded_lines(path))
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IngestError(f"line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None
        if not isinstance(items, list):
            raise IngestError("the JSON file must hold one array of objects, or one object per line")
        if len(items) > MAX_ROWS:
            raise IngestError(f"{len(items)} records in the array; at most {MAX_ROWS} are supported")
        where = [f"item {i + 1}" for i in range(len(items))]
    else:
        items, where = [], []
        for lineno, line in enumerate(_decoded_lines(path), start=1):
            if not line.strip():
                continue
            if len(line) > tabular.MAX_FIELD_BYTES:  # one cap for a CSV cell and a JSON line
                raise IngestError(f"line {lineno}: longer than {human_size(tabular.MAX_FIELD_BYTES)}, "
                                  f"the limit for one record")
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                hint = " (is this a CSV file? then name it .csv)" if lineno == 1 and "," in line else ""
                raise IngestError(f"line {lineno}, column {exc.colno}: not valid JSON ({exc.msg}){hint}") from None
            where.append(f"line {lineno}")
            if len(items) > MAX_ROWS:
                raise IngestError(f"line {lineno}: record {len(items)} is past the limit of {MAX_ROWS} records")
    if not items:
        raise IngestError("the file holds no records")
    columns: list[str] = []
    for obj, w in zip(items, where):
        if not isinstance(obj, dict):
            raise IngestError(f"{w}: expected a JSON object like {{\"text\": ..., \"label\": ...}}, "
                              f"got {type(obj).__name__}")
        if not columns:
            columns = [str(k) for k in obj]
    if not columns:
        raise IngestError(f"{where[0]}: the object has no fields")
    return columns, items, where


def _json_value(value, w: str, column: str, role: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    raise IngestError(f"{w}: the {role} ({column!r}) must be a string or a number, not {type(value).__name__}")


def _records(path: Path, text_column: str | None, label_column: str | None, split_column: str | None = None):
    """(format, columns, text column, label column, split column or None, texts, labels, each
    row's split code (empty without a split column), where each row is)."""
    fmt = _format(path)
    if fmt == "csv":
        header, records = iter_table(path, max_rows=MAX_ROWS)
    else:
        header, items, where = _read_json(path)
    split = find_split_column(header, split_column)
    label = pick_column(header, label_column, LABEL_NAMES, -1, "label", exclude=split)
    text = pick_column(header, text_column, TEXT_NAMES, 0, "text", exclude=(label, split))
    if text == label:
        raise IngestError(f"the text and the label cannot be the same column ({text!r})")
    if split is not None and split in (text, label):
        role = "text" if split == text else "label"
        raise IngestError(f"the split column {split!r} cannot also be the {role} column")
    codes = bytearray()
    if fmt == "csv":
        ti, li = header.index(text), header.index(label)
        si = header.index(split) if split is not None else None
        texts, labels, where = [], [], []
        for line, row in records:  # only these columns are kept
            texts.append(row[ti])
            labels.append(row[li])
            where.append(f"line {line}")
            if si is not None:
                codes.append(split_code(row[si], where[-1], split))
    else:
        texts, labels = [], []
        roles = ((text, "text"), (label, "label")) + (((split, "split"),) if split is not None else ())
        for obj, w in zip(items, where):
            for col, role in roles:
                if col not in obj:
                    raise IngestError(f"{w}: no {col!r} field (the {role}); every record needs one")
            texts.append(_json_value(obj[text], w, text, "text"))
            labels.append(_json_value(obj[label], w, label, "label"))
            if split is not None:
                codes.append(split_code(_json_value(obj[split], w, split, "split"), w, split))
    return fmt, header, text, label, split, texts, labels, np.frombuffer(bytes(codes), dtype=np.uint8), where


def ingest_text(
    source: Path,
    out_dir: Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    split_column: str | None = None,
    test_fraction: float = 0.0,
) -> dict:
    """Validate `source` and write the cache into `out_dir` (which must not exist). Returns info."""
    source = Path(source)
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    fmt, columns, text_col, label_col, split_col, texts, labels, codes, where = _records(
        source, text_column, label_column, split_column)
    # Token lists are not kept (they would cost many times the file's size): each text is
    # tokenized once for the vocabulary (training rows only) and once to encode it.
    for i, t in enumerate(texts):
        if _TOKEN.search(t) is None:
            raise IngestError(f"{where[i]}: the text ({text_col!r}) is empty")
    task, y, classes = encode_labels(labels, where, label_col, "classification", ("classification",))
    n = len(texts)
    train_idx, val_idx, test_idx, split = split_rows(n, codes, split_col, val_fraction=val_fraction,
                                                     test_fraction=test_fraction, seed=seed, y=y, classes=classes)

    counts: Counter = Counter()
    train_lengths = np.empty(len(train_idx), dtype=np.int64)
    for j, i in enumerate(train_idx):
        toks = tokenize(texts[i])
        counts.update(toks)
        train_lengths[j] = len(toks)
    vocab = [PAD, UNK] + [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: MAX_VOCAB - 2]]
    del counts
    index = {t: i for i, t in enumerate(vocab)}
    max_len = int(min(MAX_LEN, max(1, np.ceil(np.percentile(train_lengths, LENGTH_PERCENTILE)))))
    all_lengths = np.empty(n, dtype=np.int64)
    unknown = [0]

    def encode(rows: np.ndarray, count_unknown: bool) -> tuple[np.ndarray, np.ndarray]:
        X = np.zeros((len(rows), max_len), dtype=np.int32)
        lengths = np.zeros(len(rows), dtype=np.int32)
        for j, i in enumerate(rows):
            toks = tokenize(texts[i])
            all_lengths[i] = len(toks)
            ids = [index.get(t, 1) for t in toks[:max_len]]
            X[j, : len(ids)] = ids
            lengths[j] = len(ids)
            if count_unknown:
                unknown[0] += ids.count(1)
        return X, lengths

    X_train, len_train = encode(train_idx, False)
    X_val, len_val = encode(val_idx, True)
    val_unknown = unknown[0]
    val_total = int(len_val.sum())
    X_test, len_test = encode(test_idx, False)
    info: dict = {
        "kind": "text",
        "task": task,
        "text_column": text_col,
        "label_column": label_col,
        "columns": columns,
        "format": fmt,
        "input_shape": [max_len],
        "max_len": max_len,
        "vocab_size": len(vocab),
        "tokenizer": {"type": "word", "lowercase": True, "pattern": TOKEN_PATTERN, "pad_id": 0, "unk_id": 1,
                      "max_len": max_len, "padding": "right", "truncation": "keep the first max_len tokens"},
        "num_rows": n,
        **split,
        "length_stats": {"min": int(all_lengths.min()), "mean": round(float(all_lengths.mean()), 2),
                         "max": int(all_lengths.max()), "p95_train": max_len},
        "truncated": int((all_lengths > max_len).sum()),
        "val_unknown_token_fraction": round(val_unknown / val_total, 4) if val_total else 0.0,
        "preview": {"texts": [{"text": texts[i][:PREVIEW_CHARS], "label": labels[i]} for i in range(min(n, PREVIEW_ROWS))]},
        **class_info(y, classes),
    }
    arrays = {"X_train": X_train, "X_val": X_val, "len_train": len_train, "len_val": len_val,
              "y_train": y[train_idx], "y_val": y[val_idx]}
    parts = [("train", train_idx), ("val", val_idx)]
    if len(test_idx):
        arrays.update(X_test=X_test, len_test=len_test, y_test=y[test_idx])
        parts.append(("test", test_idx))
    with atomic_dir(out_dir) as tmp:
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        (tmp / "vocab.json").write_text(json.dumps(vocab))
        # The raw texts too, in X's row order: sample predictions show them, and models with their
        # own tokenizer (Hugging Face) train on them, still from the cache.
        for part, idx in parts:
            (tmp / f"{part}_texts.json").write_text(json.dumps([texts[i] for i in idx]))
        (tmp / "info.json").write_text(json.dumps(info))
    return info


__all__ = ["IngestError", "ingest_text", "tokenize"]
