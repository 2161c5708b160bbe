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

Scaling
    One mean and standard deviation over every value of the training rows (a per-step scaling
    would change the sequences' shapes); stored in info["normalization"] for inference.
    Regression targets are stored as they are, with their training mean/std in
    info["target_normalization"] (the training loop standardises them).

Split
    Seeded; stratified per class for classification.

Output (written to `<out_dir>.partial`, renamed into place; on any failure it is removed)
    X_train.npy X_val.npy  float32 [N, L, 1]    y_train.npy y_val.npy  int64 / float32 [N]   info.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from workers.datasets.common import (
    atomic_dir,
    check_val_fraction,
    class_info,
    encode_labels,
    pick_column,
    seeded_split,
)
from workers.datasets.tabular import IngestError, _read_table

MAX_STEPS = 10_000
PREVIEW_ROWS = 10
PREVIEW_COLUMNS = 24
PREVIEW_SERIES_PER_CLASS = 3
PREVIEW_POINTS = 200
COLUMNS_LISTED = 256


def _parse(rows: list[list[str]], columns: list[int], header: list[str], lines: list[int]) -> np.ndarray:
    """The numeric cells as float64 [N, L], or an error naming the first bad cell."""
    try:
        X = np.asarray([[r[c] for c in columns] for r in rows], dtype=np.float64)
    except ValueError:
        X = None
    if X is not None and np.isfinite(X).all():
        return X
    for i, r in enumerate(rows):
        for c in columns:
            cell = r[c]
            if cell == "":
                raise IngestError(f"line {lines[i]}, column {header[c]!r}: empty value (every sequence must be "
                                  f"complete; fill or drop missing values)")
            try:
                value = float(cell)
            except ValueError:
                raise IngestError(f"line {lines[i]}, column {header[c]!r}: {cell[:40]!r} is not a number") from None
            if not np.isfinite(value):
                raise IngestError(f"line {lines[i]}, column {header[c]!r}: {cell!r} is not a finite number")
    raise AssertionError("unreachable")


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
) -> dict:
    """Validate `source` and write the cache into `out_dir` (which must not exist). Returns info."""
    val_fraction = check_val_fraction(val_fraction)
    header, rows, lines = _read_table(Path(source), header_row=None, max_columns=MAX_STEPS + 1)
    label = pick_column(header, label_column, ("label",), -1, "label")
    li = header.index(label)
    steps = [c for c in range(len(header)) if c != li]
    where = [f"line {n}" for n in lines]
    task, y, classes = encode_labels([r[li] for r in rows], where, label, task)
    X = _parse(rows, steps, header, lines)
    n, length = X.shape
    train_idx, val_idx = seeded_split(n, val_fraction, seed, y if task == "classification" else None)

    mean = float(X[train_idx].mean())
    std = float(X[train_idx].std())
    if std < 1e-12:
        std = 1.0
    Xn = ((X - mean) / std).astype(np.float32)[:, :, None]

    preview_cols = [c for c in range(len(header)) if c != li][:PREVIEW_COLUMNS] + [li]
    if task == "classification":
        picks = [(classes[c], i) for c in range(len(classes)) for i in np.flatnonzero(y == c)[:PREVIEW_SERIES_PER_CLASS]]
    else:
        picks = [(rows[i][li], i) for i in range(min(n, PREVIEW_SERIES_PER_CLASS * 3))]
    info: dict = {
        "kind": "sequence",
        "task": task,
        "label_column": label,
        "num_columns": len(header),
        "header_row": lines[0] != 1,  # False: the first line was data, columns named col1..colN
        "input_shape": [length, 1],
        "seq_len": length,
        "channels": 1,
        "num_rows": n,
        "num_train": len(train_idx),
        "num_val": len(val_idx),
        "val_fraction": val_fraction,
        "split": "seeded",
        "split_seed": seed,
        "normalization": {"mean": [mean], "std": [std], "scope": "all values of the training rows"},
        "value_range": [round(float(X.min()), 6), round(float(X.max()), 6)],
        "preview": {
            "header": [header[c] for c in preview_cols],
            "rows": [[r[c] for c in preview_cols] for r in rows[:PREVIEW_ROWS]],
            "columns_hidden": max(0, len(header) - len(preview_cols)),
            "series": [{"label": str(lab), "values": _downsample(X[i])} for lab, i in picks],
        },
    }
    if len(header) <= COLUMNS_LISTED:
        info["columns"] = header
    if task == "classification":
        info.update(class_info(y, classes))
    else:
        y_mean, y_std = float(y[train_idx].mean()), float(y[train_idx].std()) or 1.0
        info.update(num_outputs=1, target_normalization={"mean": y_mean, "std": y_std})
    with atomic_dir(out_dir) as tmp:
        for name, arr in {"X_train": Xn[train_idx], "X_val": Xn[val_idx],
                          "y_train": y[train_idx], "y_val": y[val_idx]}.items():
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        (tmp / "info.json").write_text(json.dumps(info))
    return info


__all__ = ["IngestError", "ingest_sequences"]
