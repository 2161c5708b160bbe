"""Helpers shared by the ingest modules (no Django, no torch): the atomic output directory,
seeded splits and label encoding with user-facing messages."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from workers.datasets.tabular import IngestError

MAX_CLASSES = 1_000
CLASSIFICATION_MAX_INT_LABELS = 50


@contextmanager
def atomic_dir(out_dir: Path) -> Iterator[Path]:
    """Yield `<out_dir>.partial` (emptied first); rename it to `out_dir` when the block ends
    without an exception, remove it otherwise. `out_dir` must not exist."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_val_fraction(val_fraction) -> float:
    try:
        value = float(val_fraction)
    except (TypeError, ValueError):
        raise IngestError(f"the validation fraction must be a number between 0 and 1, not {val_fraction!r}") from None
    if not 0.0 < value < 1.0:
        raise IngestError("the validation fraction must be between 0 and 1")
    return value


def is_number(text: str) -> bool:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value)


def seeded_split(n: int, val_fraction: float, seed: int, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), each sorted. With class labels `y` the split is
    stratified: every class with at least two rows puts round(n_c × val_fraction), clamped to
    1..n_c-1, rows into validation; otherwise a seeded permutation of all rows."""
    rng = np.random.default_rng(seed)
    if y is None:
        n_val = max(1, round(n * val_fraction))
        if n - n_val < 1:
            raise IngestError(f"only {n} rows: too few to split into training and validation")
        perm = rng.permutation(n)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    is_val = np.zeros(n, dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < 2:
            continue
        k = min(len(idx) - 1, max(1, round(len(idx) * val_fraction)))
        is_val[idx[rng.permutation(len(idx))[:k]]] = True
    if not is_val.any() or is_val.all():
        raise IngestError(f"only {n} rows: too few to split into training and validation "
                          f"(need at least two rows of some class)")
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def encode_labels(labels: Sequence[str], where: Sequence[str], label: str, task: str | None,
                  allowed_tasks: tuple[str, ...] = ("classification", "regression")) -> tuple[str, np.ndarray, list[str]]:
    """(task, y, class names) from raw label strings. `where[i]` names row i in messages
    ("line 7"). task None: classification unless the labels are numbers that are not a few
    whole numbers. Classification y is int64 class indices (classes sorted, numerically for
    whole numbers); regression y is float32."""
    for i, v in enumerate(labels):
        if v == "":
            raise IngestError(f"{where[i]}: the label ({label!r}) is empty")
    numeric = all(is_number(v) for v in labels)
    if task is None:
        if "regression" not in allowed_tasks or not numeric:
            task = "classification"
        else:
            values = {float(v) for v in labels}
            integral = all(v.is_integer() for v in values)
            task = "classification" if integral and len(values) <= CLASSIFICATION_MAX_INT_LABELS else "regression"
    if task not in allowed_tasks:
        raise IngestError(f"unknown task {task!r}: use {' or '.join(allowed_tasks)}")
    if task == "regression":
        if not numeric:
            bad = next(i for i, v in enumerate(labels) if not is_number(v))
            raise IngestError(f"{where[bad]}: label {labels[bad]!r} is not a number (needed for regression)")
        return task, np.asarray([float(v) for v in labels], dtype=np.float32), []
    if numeric and all(float(v).is_integer() for v in labels):
        keys = sorted({int(float(v)) for v in labels})
        classes = [str(k) for k in keys]
        lookup = {k: i for i, k in enumerate(keys)}
        y = np.asarray([lookup[int(float(v))] for v in labels], dtype=np.int64)
    else:
        classes = sorted(set(labels))
        lookup_s = {c: i for i, c in enumerate(classes)}
        y = np.asarray([lookup_s[v] for v in labels], dtype=np.int64)
    if len(classes) < 2:
        raise IngestError(f"the label column {label!r} has a single class ({classes[0]!r}); need at least two")
    if len(classes) > MAX_CLASSES:
        raise IngestError(f"{len(classes)} classes in {label!r}; at most {MAX_CLASSES} are supported")
    return task, y, classes


def class_info(y: np.ndarray, classes: list[str]) -> dict:
    counts = np.bincount(y, minlength=len(classes))
    return {"classes": classes, "num_classes": len(classes), "num_outputs": len(classes),
            "class_counts": {c: int(k) for c, k in zip(classes, counts)}}


def pick_column(header: list[str], wanted: str | None, default_names: tuple[str, ...], fallback: int,
                role: str, exclude: str | None = None) -> str:
    """The column to use for `role` ("label", "text"): the one the user named (it must exist),
    else the first column named like `default_names` (any case), else header[fallback]."""
    if wanted:
        if wanted not in header:
            raise IngestError(f"{role} column {wanted!r} does not exist; columns are: {', '.join(header)}")
        return wanted
    lowered = {h.lower(): h for h in reversed(header)}
    for name in default_names:
        if name in lowered and lowered[name] != exclude:
            return lowered[name]
    candidates = [h for h in header if h != exclude]
    return candidates[fallback] if candidates else header[fallback]
