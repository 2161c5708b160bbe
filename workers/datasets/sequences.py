"""Numeric-sequence ingest: CSV rows of numbers plus a label → float32 [N, L, 1] (pure Python +
numpy, no Django, no torch).

Input
    One sequence per row: L numeric columns and one label column (`label_column`, else a column
    named "label", else the last). A header row is optional: a first line made only of numbers
    is data, and the columns are then called col1..colN. Every row has the same length (ragged
    rows are refused, naming the line); every value is a finite number (an empty, non-numeric,
    NaN or infinite cell is refused, naming the line and column).

Task
    classification or regression: given, or from the labels as for tables (numbers that are
    not a few whole numbers mean regression).

Missing values
    Refused (naming the line and column) unless `missing="impute"`: then an empty cell gets the
    median of its step (column) over the training rows, and when any cell was empty the
    sequences get a second channel, the missing indicator (1 where the value was imputed):
    X is then [N, L, 2]. The medians are stored in info["missing"]["fill"] (one per step), so
    inference imputes an empty value the same way. Any other non-number is still refused.

Scaling
    One mean and standard deviation over every value of the training rows (a per-step scaling
    would change the sequences' shapes); stored in info["normalization"] for inference.
    Regression targets are stored as they are, with their training mean/std in
    info["target_normalization"] (the training loop standardises them).

Split
    A column named "split" (any case; the `split_column` option may name another) decides each
    row's split (train, val / validation, test) and is not a step of the sequence. Without one:
    seeded, stratified per class for classification, with an optional test fraction.

Output (written to `<out_dir>.partial`, renamed into place; on any failure it is removed)
    X_train.npy X_val.npy  float32 [N, L, 1]    y_train.npy y_val.npy  int64 / float32 [N]   info.json
    X_test.npy y_test.npy  the same, when there is a test split
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from workers.datasets.common import (
    IngestError,
    LineNames,
    atomic_dir,
    check_fractions,
    encode_labels,
    find_split_column,
    pick_column,
    split_code,
    split_rows,
    target_info,
)
from workers.datasets.tabular import iter_table

MAX_STEPS = 10_000
PREVIEW_ROWS = 10
PREVIEW_COLUMNS = 24
PREVIEW_SERIES_PER_CLASS = 3
PREVIEW_POINTS = 200
COLUMNS_LISTED = 256


BLOCK_ROWS = 4096


def _bad_cell(values: list[str], line: int, names: list[str], impute: bool = False) -> IngestError | None:
    """The message for the first of a row's values that is not a finite float32 number (an empty
    one is fine when it will be imputed)."""
    for cell, name in zip(values, names):
        if cell == "" and impute:
            continue
        if cell == "":
            return IngestError(f"line {line}, column {name!r}: empty value (every sequence must be "
                               f"complete; fill or drop missing values, or upload with missing=impute "
                               f"to impute them from the training rows)")
        try:
            value = float(cell)
        except ValueError:
            return IngestError(f"line {line}, column {name!r}: {cell[:40]!r} is not a number")
        if not np.isfinite(np.float32(value)):
            return IngestError(f"line {line}, column {name!r}: {cell!r} is not a finite number (float32)")
    return None


def _read(source: Path, label_column: str | None, split_column: str | None = None, impute: bool = False):
    """Stream the file: the values as float32 [N, L] (converted a block of rows at a time, so
    memory is about the float32 array, not Python strings), the label strings, the preview
    rows, the header, the line of every row, the split column (or None) and each row's split code."""
    header, records = iter_table(source, header_row=None, max_columns=sys.maxsize)  # the step cap, below
    split_col = find_split_column(header, split_column)
    extra = 1 + (split_col is not None)
    if len(header) - extra > MAX_STEPS:
        raise IngestError(f"{len(header) - extra} steps in a row (plus the label column); sequences may have at "
                          f"most {MAX_STEPS} steps")
    label = pick_column(header, label_column, ("label",), -1, "label", exclude=split_col)
    if label == split_col:
        raise IngestError(f"the split column {split_col!r} cannot also be the label column")
    li = header.index(label)
    si = header.index(split_col) if split_col is not None else -1
    steps = [c for c in range(len(header)) if c not in (li, si)]
    if not steps:
        raise IngestError(f"no steps: the file has only the label ({label!r}) and split ({split_col!r}) columns")
    blocks: list[np.ndarray] = []
    block: list[list[str]] = []
    block_lines: list[int] = []
    labels: list[str] = []
    lines: list[int] = []
    preview: list[list[str]] = []
    codes = bytearray()

    def flush() -> None:
        rows = [[c or "nan" for c in r] for r in block] if impute else block  # empty: NaN, imputed later
        try:
            X = np.asarray(rows, dtype=np.float64).astype(np.float32)
        except ValueError:
            X = None
        bad = X is None or not np.isfinite(X).all()
        if bad and impute and X is not None:  # only the empty cells may be NaN
            empty = np.asarray([[c == "" for c in r] for r in block], dtype=bool)
            bad = bool((~np.isfinite(X) & ~empty).any())
        if bad:
            names = [header[c] for c in steps]
            for row, line in zip(block, block_lines):
                error = _bad_cell(row, line, names, impute)
                if error is not None:
                    raise error
            raise IngestError(f"lines {block_lines[0]}-{block_lines[-1]}: a value is not a number")
        blocks.append(X)
        block.clear()
        block_lines.clear()

    for line, row in records:
        labels.append(row[li])
        lines.append(line)
        if split_col is not None:
            codes.append(split_code(row[si], f"line {line}", split_col))
        if len(preview) < PREVIEW_ROWS:
            preview.append(row)
        block.append([row[c] for c in steps])
        block_lines.append(line)
        if len(block) >= BLOCK_ROWS:
            flush()
    if block:
        flush()
    return header, label, li, np.concatenate(blocks), labels, lines, preview, split_col, \
        np.frombuffer(bytes(codes), dtype=np.uint8)


def _preview_picks(task: str, y: np.ndarray, classes: list[str], labels: list[str]) -> list[tuple[str, int]]:
    if task == "classification":
        return [(classes[c], int(i)) for c in range(len(classes))
                for i in np.flatnonzero(y == c)[:PREVIEW_SERIES_PER_CLASS]]
    return [(labels[i], i) for i in range(min(len(labels), PREVIEW_SERIES_PER_CLASS * 3))]


def _downsample(seq: np.ndarray) -> list[float]:
    if len(seq) > PREVIEW_POINTS:
        seq = seq[np.linspace(0, len(seq) - 1, PREVIEW_POINTS).round().astype(int)]
    return [round(float(v), 4) for v in seq]


def ingest_sequences(
    source: Path,
    out_dir: Path,
    *,
    label_column: str | None = None,
    task: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    split_column: str | None = None,
    test_fraction: float = 0.0,
    missing: str = "refuse",
) -> dict:
    """Validate `source` and write the cache into `out_dir` (which must not exist). Returns info."""
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    if missing not in ("refuse", "impute"):
        raise IngestError(f"missing must be refuse or impute, not {missing!r}")
    header, label, li, X, labels, lines, preview, split_col, codes = _read(Path(source), label_column, split_column,
                                                                           impute=missing == "impute")
    task, y, classes = encode_labels(labels, LineNames(lines), label, task)
    n, length = X.shape
    classification = task == "classification"
    train_idx, val_idx, test_idx, split = split_rows(
        n, codes, split_col, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
        y=y if classification else None, classes=classes if classification else None)

    si = header.index(split_col) if split_col is not None else -1
    step_names = [header[c] for c in range(len(header)) if c not in (li, si)]
    empty, medians = _impute(X, train_idx, step_names) if missing == "impute" else (None, None)
    train_values = X[train_idx]
    mean = float(train_values.mean(dtype=np.float64))
    std = float(train_values.std(dtype=np.float64))
    del train_values
    if std < 1e-12:
        std = 1.0
    series = [(lab, _downsample(X[i])) for lab, i in _preview_picks(task, y, classes, labels)]
    X -= np.float32(mean)  # in place: the array is the biggest thing held
    X /= np.float32(std)
    # The missing indicator is a second channel (only when some value was imputed).
    Xn = X[:, :, None] if empty is None or not empty.any() else np.stack([X, empty.astype(np.float32)], axis=-1)
    channels = int(Xn.shape[2])

    preview_cols = ([c for c in range(len(header)) if c not in (li, si)][:PREVIEW_COLUMNS] + [li]
                    + ([si] if si >= 0 else []))
    info: dict = {
        "kind": "sequence",
        "task": task,
        "label_column": label,
        "num_columns": len(header),
        "header_row": lines[0] != 1,  # False: the first line was data, columns named col1..colN
        "input_shape": [length, channels],
        "seq_len": length,
        "channels": channels,
        "num_rows": n,
        **split,
        "normalization": {"mean": [mean], "std": [std], "scope": "all values of the training rows"},
        "value_range": [round(float(X.min()), 6), round(float(X.max()), 6)],
        "preview": {
            "header": [header[c] for c in preview_cols],
            "rows": [[r[c] for c in preview_cols] for r in preview],
            "columns_hidden": max(0, len(header) - len(preview_cols)),
            "series": [{"label": str(lab), "values": values} for lab, values in series],
        },
    }
    if len(header) <= COLUMNS_LISTED:
        info["columns"] = header
    if empty is not None:
        info["missing"] = _missing_info(empty, train_idx, step_names, medians)
        if channels == 2:
            info["channel_names"] = ["value", "missing"]
    info.update(target_info(task, y, train_idx, classes))
    parts = [("train", train_idx), ("val", val_idx)] + ([("test", test_idx)] if len(test_idx) else [])
    with atomic_dir(out_dir) as tmp:
        for part, idx in parts:
            np.save(tmp / f"X_{part}.npy", Xn[idx], allow_pickle=False)
            np.save(tmp / f"y_{part}.npy", y[idx], allow_pickle=False)
        (tmp / "info.json").write_text(json.dumps(info))
    return info


def _impute(X: np.ndarray, train_idx: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Fill the NaN (empty) cells of X in place with their step's median over the training rows;
    returns (where they were, the medians)."""
    empty = np.isnan(X)
    seen = (~empty[train_idx]).sum(0)
    if (seen == 0).any():
        name = names[int(np.flatnonzero(seen == 0)[0])]
        raise IngestError(f"column {name!r} has no value in the training rows: nothing to impute it from")
    with np.errstate(all="ignore"):
        medians = np.nanmedian(X[train_idx], axis=0).astype(np.float32)
    rows, cols = np.nonzero(empty)
    X[rows, cols] = medians[cols]
    return empty, medians


def _f32(value) -> float:
    """A float32 as the shortest decimal that reads back as the same float32 (0.5184, not 0.51839995)."""
    return float(str(np.float32(value)))


def _missing_info(empty: np.ndarray, train_idx: np.ndarray, names: list[str], medians) -> dict:
    per_step = empty.sum(0)
    in_train = empty[train_idx].sum(0)
    listed = np.flatnonzero(per_step)[:COLUMNS_LISTED]
    return {"strategy": "impute", "source": "the training rows", "statistic": "median of the step",
            "fill": [_f32(m) for m in medians],
            "columns": {names[i]: {"fill": _f32(medians[i]), "statistic": "median", "cells": int(per_step[i]),
                                   "train_cells": int(in_train[i])} for i in listed},
            "steps": int((per_step > 0).sum()), "cells": int(per_step.sum()),
            "indicator": "a second channel, 1 where the value was imputed" if per_step.any() else None}


__all__ = ["IngestError", "ingest_sequences"]
