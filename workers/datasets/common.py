"""Helpers shared by the ingest modules (no Django, no torch): the user-facing error, the atomic
output directory, seeded splits and label encoding with user-facing messages."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from models_zoo.contracts import (
    IngestError,  # one definition: the archive checks raise it too
)

MAX_CLASSES = 1_000
CLASSIFICATION_MAX_INT_LABELS = 50


class LineNames(Sequence):
    """`where` for `encode_labels` when rows come from file lines: item i is "line <lines[i]>",
    made on demand (only an error message needs one; millions of strings up front would not)."""

    def __init__(self, lines: Sequence[int]):
        self.lines = lines

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [f"line {n}" for n in self.lines[i]]
        return f"line {self.lines[i]}"


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


# -- splits -------------------------------------------------------------------------------------
# A split column's values (any case, stripped) -> 0 train, 1 validation, 2 test.
SPLIT_CODES = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}
SPLIT_NAMES = ("train", "val", "test")
SPLIT_COLUMN = "split"  # the column that decides the split unless the `split_column` option names another


def find_split_column(header: list[str], wanted: str | None, label: str | None = None) -> str | None:
    """The column that decides each row's split: the one the user named (it must exist), else the
    first named "split" (any case), else None (the seeded split)."""
    if wanted:
        if wanted not in header:
            raise IngestError(f"split column {wanted!r} does not exist; columns are: {', '.join(header)}")
        column = wanted
    else:
        column = next((h for h in header if h.lower() == SPLIT_COLUMN), None)
    if column is not None and column == label:
        raise IngestError(f"the split column {column!r} cannot also be the label column")
    return column


def split_code(value: str, where: str, column: str) -> int:
    """0 train, 1 validation, 2 test for one row's split value; a line-numbered IngestError otherwise."""
    code = SPLIT_CODES.get(value.strip().lower())
    if code is None:
        if not value.strip():
            raise IngestError(f"{where}: the split ({column!r}) is empty; every row needs train, val or test")
        raise IngestError(f"{where}: split {value[:40]!r} (column {column!r}) is not train, val (validation) or test")
    return code


def provided_split(codes: np.ndarray, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test indices) from each row's split code; training and validation
    rows must both exist (every epoch is evaluated on the validation rows)."""
    codes = np.asarray(codes)
    train, val, test = (np.flatnonzero(codes == k) for k in range(3))
    if not len(train):
        raise IngestError(f"the split column {column!r} marks no row as train; the model needs training rows")
    if not len(val):
        raise IngestError(f"the split column {column!r} marks no row as val: every epoch is evaluated on the "
                          f"validation rows (mark some rows val, or drop the column for a seeded split)")
    return train, val, test


def check_train_classes(y: np.ndarray, classes: list[str], train_idx: np.ndarray, column: str) -> None:
    """A provided split must give every class training rows: a model cannot learn a class it never sees."""
    present = np.bincount(y[train_idx], minlength=len(classes))
    missing = [c for c, k in zip(classes, present) if k == 0]
    if missing:
        raise IngestError(f"class {missing[0]!r} has no train rows (split column {column!r}); "
                          f"every class needs training rows")


def check_fractions(val_fraction, test_fraction) -> tuple[float, float]:
    val_fraction = check_val_fraction(val_fraction)
    try:
        test_fraction = float(test_fraction)
    except (TypeError, ValueError):
        raise IngestError(f"the test fraction must be a number from 0 to 1, not {test_fraction!r}") from None
    if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise IngestError("the test fraction must be at least 0, and the validation and test fractions together "
                          "below 1")
    return val_fraction, test_fraction


def seeded_splits(n: int, val_fraction: float, test_fraction: float, seed: int, y: np.ndarray | None = None, *,
                  exact_total: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test indices), each sorted. Without a test fraction exactly
    `seeded_split` (so existing splits stay as they were); with one, the test rows are drawn
    first the same way, then validation from the rest, both fractions being shares of all rows."""
    if not test_fraction:
        train, val = seeded_split(n, val_fraction, seed, y, exact_total=exact_total)
        return train, val, np.zeros(0, dtype=np.int64)
    try:
        rest, test = seeded_split(n, test_fraction, seed, y, exact_total=exact_total)
        sub_train, sub_val = seeded_split(len(rest), val_fraction / (1.0 - test_fraction), seed,
                                          None if y is None else y[rest], exact_total=exact_total)
    except IngestError:
        raise IngestError(f"only {n} rows: too few to split into training, validation and test "
                          f"(lower the test fraction, or upload more rows)") from None
    return rest[sub_train], rest[sub_val], test


def split_info(source: str, sizes: tuple[int, int, int], *, column: str | None = None,
               val_fraction: float | None = None, test_fraction: float | None = None,
               seed: int | None = None) -> dict:
    """The info.json entries that say how the rows were split and how many went where."""
    n_train, n_val, n_test = (int(k) for k in sizes)
    splits: dict = {"source": source, "train": n_train, "val": n_val, "test": n_test}
    if column is not None:
        splits["column"] = column
    if source == "seeded":
        splits.update(val_fraction=val_fraction, test_fraction=test_fraction or 0.0, seed=seed)
    return {
        "split": source,
        "split_column": column,
        "num_train": n_train,
        "num_val": n_val,
        "num_test": n_test,
        "val_fraction": val_fraction if source == "seeded" else None,
        "test_fraction": (test_fraction or 0.0) if source == "seeded" else None,
        "split_seed": seed if source == "seeded" else None,
        "splits": splits,
    }


def split_rows(n: int, codes: np.ndarray, column: str | None, *, val_fraction: float, test_fraction: float,
               seed: int, y: np.ndarray | None = None, classes: list[str] | None = None,
               exact_total: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(train, validation, test indices, the split's info.json entries) of a kind whose rows may
    carry a split `column` (each row's code in `codes`): the provided split then, else the
    seeded one. `y`: class indices (classification only) — the seeded split is stratified by
    them, and a provided split must give each of `classes` training rows."""
    if column is not None:
        if test_fraction:
            raise IngestError(f"the test fraction is for the seeded split; this file's split column {column!r} "
                              f"says which rows are test")
        train, val, test = provided_split(codes, column)
        if y is not None and classes is not None:
            check_train_classes(y, classes, train, column)
        return train, val, test, split_info("provided", (len(train), len(val), len(test)), column=column)
    train, val, test = seeded_splits(n, val_fraction, test_fraction, seed, y, exact_total=exact_total)
    return train, val, test, split_info("seeded", (len(train), len(val), len(test)), val_fraction=val_fraction,
                                        test_fraction=test_fraction, seed=seed)


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


def seeded_split(n: int, val_fraction: float, seed: int, y: np.ndarray | None = None, *,
                 exact_total: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), each sorted. With class labels `y` the split is
    stratified (`stratified_val_mask`: every class with at least two rows puts
    round(n_c × val_fraction), clamped to 1..n_c-1, rows into validation; with `exact_total`
    the classes' counts add up to max(1, round(n × val_fraction)) instead); otherwise a seeded
    permutation of all rows puts max(1, round(n × val_fraction)) of them into validation."""
    if y is None:
        rng = np.random.default_rng(seed)
        n_val = max(1, round(n * val_fraction))
        if n - n_val < 1:
            raise IngestError(f"only {n} rows: too few to split into training and validation")
        perm = rng.permutation(n)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    is_val = stratified_val_mask(y, val_fraction, seed, exact_total=exact_total)
    if not is_val.any() or is_val.all():
        raise IngestError(f"only {n} rows: too few to split into training and validation "
                          f"(need at least two rows of some class)")
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def stratified_val_mask(y: np.ndarray, val_fraction: float, seed: int, *, exact_total: bool = False) -> np.ndarray:
    """Boolean "goes to validation" per row. Each class with at least two rows, in sorted class
    order, draws its validation rows with one seeded permutation of its own rows (so the split is
    reproducible); a class with a single row stays in training. How many per class: see
    `seeded_split`. Never raises: each kind words "too few to split" in its own terms."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    _, sizes = np.unique(y, return_counts=True)
    # Each class's rows in ascending order (what np.flatnonzero(y == c) gives), from one stable
    # sort rather than one full scan of y per class (up to MAX_CLASSES scans of millions of rows).
    members = np.split(np.argsort(y, kind="stable"), np.cumsum(sizes)[:-1])
    sizes = [int(m) for m in sizes]
    counts = (_exact_val_counts(sizes, val_fraction, len(y)) if exact_total
              else [min(m - 1, max(1, round(m * val_fraction))) for m in sizes])
    is_val = np.zeros(len(y), dtype=bool)
    for idx, k in zip(members, counts):
        if len(idx) < 2:
            continue
        is_val[idx[rng.permutation(len(idx))[:k]]] = True
    return is_val


def _exact_val_counts(sizes: list[int], val_fraction: float, n: int) -> list[int]:
    """Per-class validation counts that add up to what an unstratified split of the same rows
    would hold out, max(1, round(n × val_fraction)) (as scikit-learn's stratified
    train_test_split keeps the total): floor(n_c × val_fraction) clamped to 1..n_c-1 for each
    class of two rows or more, then one more row each for the classes with the largest remainder
    (ties: class order) until the total is reached. The clamps win over the total."""
    target = max(1, round(n * val_fraction))
    ideal = [m * val_fraction for m in sizes]
    counts = [min(m - 1, max(1, math.floor(x))) if m >= 2 else 0 for m, x in zip(sizes, ideal)]
    missing = target - sum(counts)
    for i in sorted(range(len(sizes)), key=lambda i: (math.floor(ideal[i]) - ideal[i], i)):
        if missing <= 0:
            break
        if counts[i] < sizes[i] - 1:
            counts[i] += 1
            missing -= 1
    return counts


def encode_labels(labels: Sequence[str], where: Sequence[str], label: str, task: str | None,
                  allowed_tasks: tuple[str, ...] = ("classification", "regression")) -> tuple[str, np.ndarray, list[str]]:
    """(task, y, class names) from raw label strings. `where[i]` names row i in messages
    ("line 7"). task None: classification unless the labels are numbers that are not a few
    whole numbers. Classification y is int64 class indices (classes sorted, numerically for
    whole numbers); regression y is float32."""
    task, numeric = check_labels(labels, where, label, task, allowed_tasks)
    y, classes = label_targets(labels, label, task, numeric)
    return task, y, classes


def check_labels(labels: Sequence[str], where: Sequence[str], label: str, task: str | None,
                 allowed_tasks: tuple[str, ...] = ("classification", "regression")) -> tuple[str, bool]:
    """The first half of `encode_labels`, the checks of each raw label: (task, whether every label
    is a number). Tables run it before their feature columns are checked and `label_targets` after,
    so that a file with several problems reports the same one first as it always did."""
    for i, v in enumerate(labels):
        if v == "":
            raise IngestError(f"{where[i]}: the label ({label!r}) is empty")
    numeric = all(is_number(v) for v in labels)
    task = _pick_task(labels, task, allowed_tasks, numeric)
    if task == "regression" and not numeric:
        bad = next(i for i, v in enumerate(labels) if not is_number(v))
        raise IngestError(f"{where[bad]}: label {labels[bad]!r} is not a number (needed for regression)")
    return task, numeric


def _pick_task(labels: Sequence[str], task: str | None, allowed_tasks: tuple[str, ...], numeric: bool) -> str:
    if task is None:
        if "regression" not in allowed_tasks or not numeric:
            task = "classification"
        else:
            values = {float(v) for v in labels}
            integral = all(v.is_integer() for v in values)
            task = "classification" if integral and len(values) <= CLASSIFICATION_MAX_INT_LABELS else "regression"
    if task not in allowed_tasks:
        raise IngestError(f"unknown task {task!r}: use {' or '.join(allowed_tasks)}")
    return task


def label_targets(labels: Sequence[str], label: str, task: str, numeric: bool) -> tuple[np.ndarray, list[str]]:
    """The second half of `encode_labels`: (y, class names) for labels `check_labels` passed."""
    if task == "regression":
        return np.asarray([float(v) for v in labels], dtype=np.float32), []
    y, classes = _class_indices(labels, numeric)
    if len(classes) < 2:
        raise IngestError(f"the label column {label!r} has a single class ({classes[0]!r}); need at least two")
    if len(classes) > MAX_CLASSES:
        raise IngestError(f"{len(classes)} classes in {label!r}; at most {MAX_CLASSES} are supported")
    return y, classes


def _class_indices(labels: Sequence[str], numeric: bool) -> tuple[np.ndarray, list[str]]:
    """Sorted classes (whole numbers numerically, so "10" after "9") and each label's index."""
    if numeric and all(float(v).is_integer() for v in labels):
        keys = sorted({int(float(v)) for v in labels})
        lookup = {k: i for i, k in enumerate(keys)}
        return np.asarray([lookup[int(float(v))] for v in labels], dtype=np.int64), [str(k) for k in keys]
    classes = sorted(set(labels))
    lookup_s = {c: i for i, c in enumerate(classes)}
    return np.asarray([lookup_s[v] for v in labels], dtype=np.int64), classes

def target_info(task: str, y: np.ndarray, train_idx: np.ndarray, classes: list[str]) -> dict:
    """The info.json entries that describe the target: the classes and their counts, or a
    regression target's training mean and std (the runtime trains on standardised targets)."""
    if task == "classification":
        return class_info(y, classes)
    y_mean, y_std = float(y[train_idx].mean()), float(y[train_idx].std()) or 1.0
    return {"num_outputs": 1, "target_normalization": {"mean": y_mean, "std": y_std}}


def class_info(y: np.ndarray, classes: list[str]) -> dict:
    counts = np.bincount(y, minlength=len(classes))
    return {"classes": classes, "num_classes": len(classes), "num_outputs": len(classes),
            "class_counts": {c: int(k) for c, k in zip(classes, counts)}}


def pick_column(header: list[str], wanted: str | None, default_names: tuple[str, ...], fallback: int,
                role: str, exclude: str | tuple[str | None, ...] | None = None) -> str:
    """The column to use for `role` ("label", "text"): the one the user named (it must exist),
    else the first column named like `default_names` (any case), else header[fallback]; a
    default is never one of `exclude` (another role's column)."""
    if wanted:
        if wanted not in header:
            raise IngestError(f"{role} column {wanted!r} does not exist; columns are: {', '.join(header)}")
        return wanted
    excluded = set(exclude) if isinstance(exclude, tuple) else {exclude}
    lowered = {h.lower(): h for h in reversed(header)}
    for name in default_names:
        if name in lowered and lowered[name] not in excluded:
            return lowered[name]
    candidates = [h for h in header if h not in excluded]
    return candidates[fallback] if candidates else header[fallback]
