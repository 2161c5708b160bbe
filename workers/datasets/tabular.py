"""CSV/TSV ingest: validate once, convert to a compact numeric cache plus an info dict.

Pure Python + numpy (no Django, no torch). Output directory layout:
    X_train.npy X_val.npy (float32, standardised)  y_train.npy y_val.npy  info.json
Everything is written to a temporary sibling directory and renamed into place, so a failure
leaves nothing behind.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

MAX_ROWS = 5_000_000
MAX_COLUMNS = 2_000
MAX_FIELD_BYTES = 1_000_000
MAX_CATEGORIES = 100  # distinct values in a string feature column before we refuse it
MAX_CLASSES = 1_000
CLASSIFICATION_MAX_INT_LABELS = 50


class IngestError(ValueError):
    """A problem with the user's file, worded for the user."""


def human_size(n: int) -> str:
    """A limit in words: 256 MB (2**28 or 256e6 bytes alike: whichever divides evenly), 1.5 KB, 900 bytes."""
    for unit, power in (("GB", 3), ("MB", 2), ("KB", 1)):
        for size in (1024**power, 1000**power):
            if n >= size and n % size == 0:
                return f"{n // size} {unit}"
        if n >= 1000**power:
            return f"{n / 1000**power:.1f} {unit}"
    return f"{n} bytes"


def _csv_problem(exc: csv.Error, line: int) -> IngestError:
    if "field larger than field limit" in str(exc):
        return IngestError(f"line {line}: a field is longer than {human_size(MAX_FIELD_BYTES)}, "
                           f"the limit for one cell (is a quote left open?)")
    return IngestError(f"line {line}: {exc}")


def _decoded_lines(path: Path):
    """Yield decoded text lines, naming the line and byte offset of any bad UTF-8."""
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if b"\x00" in raw:
                raise IngestError(f"line {lineno}: contains a NUL byte; is this a binary file?")
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise IngestError(
                    f"line {lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at file offset "
                    f"{offset + exc.start}); save the file as UTF-8"
                ) from None
            offset += len(raw)
            yield text


def _is_number(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value)


def read_table(path: Path, delimiter: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Parse a delimited file into (header, rows) with row-level error messages."""
    header, rows, _ = _read_table(path, delimiter)
    return header, rows


def sniff_delimiter(path: Path) -> str:
    """Tab for .tsv/.tab, comma for .csv; otherwise (an upload stored under a generated name)
    whichever of tab, semicolon and comma the first line has most of (comma on a tie)."""
    suffix = Path(path).suffix.lower()
    if suffix in {".tsv", ".tab"}:
        return "\t"
    if suffix == ".csv":
        return ","
    with open(path, "rb") as f:
        first = f.readline(64 * 1024)
    counts = {d: first.count(d.encode()) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _read_table(path: Path, delimiter: str | None = None, *, header_row: bool | None = True,
                max_columns: int | None = None) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, rows, the file line on which each row starts): blank lines and quoted
    newlines make row index and line number differ, and error messages name the line.

    header_row None: a first line made only of numbers is data, and the columns are named
    col1, col2, ... (numeric sequences often come without a header)."""
    header, records = iter_table(path, delimiter, header_row=header_row, max_columns=max_columns)
    rows: list[list[str]] = []
    lines: list[int] = []
    for line, row in records:
        rows.append(row)
        lines.append(line)
    return header, rows, lines


def iter_table(path: Path, delimiter: str | None = None, *, header_row: bool | None = True,
               max_columns: int | None = None, max_rows: int | None = None):
    """(header, an iterator of (line the row starts on, stripped cells)); the checks and
    messages of `_read_table`, without holding the rows (the caller decides what to keep).

    The caps default to MAX_COLUMNS / MAX_ROWS, read at each call (so tests can lower them)."""
    max_columns = MAX_COLUMNS if max_columns is None else max_columns
    max_rows = MAX_ROWS if max_rows is None else max_rows
    path = Path(path)
    if path.stat().st_size == 0:
        raise IngestError("the file is empty")
    if delimiter is None:
        delimiter = sniff_delimiter(path)
    csv.field_size_limit(MAX_FIELD_BYTES)
    reader = csv.reader(_decoded_lines(path), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise _csv_problem(exc, 1) from None
    if not header or all(not h.strip() for h in header):
        raise IngestError("the first line must be a header naming the columns")
    header = [h.strip() for h in header]
    if len(header) > max_columns:
        raise IngestError(f"{len(header)} columns; at most {max_columns} are supported")
    headerless = header_row is None and all(_is_number(h) for h in header)
    first = header
    if headerless:
        header = [f"col{i + 1}" for i in range(len(header))]
    if len(header) < 2:
        raise IngestError("need at least one feature column and a label column (is the delimiter right?)")
    for i, name in enumerate(header):
        if not name:
            raise IngestError(f"column {i + 1} has an empty name in the header")
    dupes = sorted(h for h, k in Counter(header).items() if k > 1)
    if dupes:
        raise IngestError(f"duplicate column names: {', '.join(dupes)}")

    def records():
        prev_end = reader.line_num
        n = 0
        if headerless:
            n += 1
            yield 1, first
        try:
            for row in reader:
                line = reader.line_num
                start = prev_end + 1
                prev_end = line
                if not row or all(not c.strip() for c in row):
                    continue  # blank lines are harmless
                if len(row) != len(header):
                    raise IngestError(f"line {line}: {len(row)} fields, but the "
                                      f"{'first line' if headerless else 'header'} has {len(header)}")
                n += 1
                if n > max_rows:
                    raise IngestError(f"line {line}: row {n} is past the limit of {max_rows} rows")
                yield start, [c.strip() for c in row]
        except csv.Error as exc:
            raise _csv_problem(exc, reader.line_num) from None
        if not n:
            raise IngestError("the file has a header but no data rows")

    return header, records()


class _ColumnStats:
    """What pass 1 learns about one feature column: the first empty cell, whether every cell is
    a finite number, and (once a cell is not) its distinct values, up to MAX_CATEGORIES."""

    __slots__ = ("first_empty", "first_text", "numeric", "values", "_seen")

    def __init__(self):
        self.first_empty: int | None = None
        self.first_text: tuple[int, str] | None = None
        self.numeric = True
        self.values: set[str] | None = set()  # None: more than MAX_CATEGORIES
        self._seen = 0

    def see(self, cell: str, line: int) -> None:
        if cell == "":
            if self.first_empty is None:
                self.first_empty = line
            return
        if self.numeric and not _is_number(cell):
            self.numeric = False
            self.first_text = (line, cell)
        if self.values is not None:
            self.values.add(cell)
            if len(self.values) > MAX_CATEGORIES:
                self.values = None


def ingest_csv(
    source: Path,
    out_dir: Path,
    *,
    label_column: str | None = None,
    task: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict:
    """Validate `source` and write the cache into `out_dir` (which must not exist). Returns info."""
    # Pass 1 streams the rows and keeps what decides each column (numeric, or its categories) and
    # the labels; pass 2 parses the cells straight into the float matrix. The rows themselves are
    # never all held as Python strings (many times the file's size).
    header, records = iter_table(Path(source))
    named = [h for h in header if h.lower() == "label"]
    label = label_column or (named[0] if named else header[-1])
    if label not in header:
        raise IngestError(f"label column {label!r} does not exist; columns are: {', '.join(header)}")
    li = header.index(label)
    feature_cols = [h for h in header if h != label]
    feature_idx = [header.index(name) for name in feature_cols]
    stats = [_ColumnStats() for _ in feature_cols]
    labels_raw: list[str] = []
    lines: list[int] = []
    preview_rows: list[list[str]] = []
    for line, row in records:
        labels_raw.append(row[li])
        lines.append(line)
        if len(preview_rows) < 10:
            preview_rows.append(row)
        for st, ci in zip(stats, feature_idx):
            st.see(row[ci], line)
    n = len(labels_raw)

    for i, v in enumerate(labels_raw):
        if v == "":
            raise IngestError(f"line {lines[i]}: the label ({label!r}) is empty")
    numeric_label = all(_is_number(v) for v in labels_raw)
    if task is None:
        if not numeric_label:
            task = "classification"
        else:
            values = {float(v) for v in labels_raw}
            integral = all(v.is_integer() for v in values)
            task = "classification" if integral and len(values) <= CLASSIFICATION_MAX_INT_LABELS else "regression"
    if task not in {"classification", "regression"}:
        raise IngestError(f"unknown task {task!r}: use classification or regression")
    if task == "regression" and not numeric_label:
        bad = next(i for i, v in enumerate(labels_raw) if not _is_number(v))
        raise IngestError(f"line {lines[bad]}: label {labels_raw[bad]!r} is not a number (needed for regression)")

    # Features: numeric columns as they are, string columns one-hot encoded.
    feature_names: list[str] = []
    categorical: dict[str, list[str]] = {}
    for name, st in zip(feature_cols, stats):
        if st.first_empty is not None:
            raise IngestError(f"line {st.first_empty}, column {name!r}: empty value (fill or drop missing values)")
        if st.numeric:
            feature_names.append(name)
            continue
        if st.values is None:
            line, cell = st.first_text
            raise IngestError(
                f"column {name!r} is not numeric (line {line}: {cell!r}) and has more than "
                f"{MAX_CATEGORIES} distinct values; at most {MAX_CATEGORIES} are one-hot encoded"
            )
        categorical[name] = sorted(st.values)
        feature_names.extend(f"{name}={v}" for v in categorical[name])
    X = np.zeros((n, len(feature_names)), dtype=np.float64)
    _, records = iter_table(Path(source))  # pass 2: the file was fully checked by pass 1
    block: list[list[str]] = []
    done = 0

    def fill(block: list[list[str]], start: int) -> None:
        j = 0
        for name, ci in zip(feature_cols, feature_idx):
            if name in categorical:
                index = {v: k for k, v in enumerate(categorical[name])}
                codes = np.fromiter((index[r[ci]] for r in block), dtype=np.int64, count=len(block))
                X[np.arange(start, start + len(block)), j + codes] = 1.0
                j += len(index)
            else:
                X[start : start + len(block), j] = np.asarray([r[ci] for r in block], dtype=np.float64)
                j += 1

    for _, row in records:
        block.append(row)
        if len(block) == 4096:
            fill(block, done)
            done += len(block)
            block = []
    if block:
        fill(block, done)

    class_names: list[str] = []
    if task == "classification":
        if numeric_label and all(float(v).is_integer() for v in labels_raw):
            keys = sorted({int(float(v)) for v in labels_raw})
            class_names = [str(k) for k in keys]
            lookup = {str(k): i for i, k in enumerate(keys)}
            y = np.asarray([lookup[str(int(float(v)))] for v in labels_raw], dtype=np.int64)
        else:
            class_names = sorted(set(labels_raw))
            lookup = {c: i for i, c in enumerate(class_names)}
            y = np.asarray([lookup[v] for v in labels_raw], dtype=np.int64)
        if len(class_names) < 2:
            raise IngestError(f"the label column {label!r} has a single class ({class_names[0]!r}); need at least two")
        if len(class_names) > MAX_CLASSES:
            raise IngestError(f"{len(class_names)} classes; at most {MAX_CLASSES} are supported")
    else:
        y = np.asarray([float(v) for v in labels_raw], dtype=np.float32)

    if not 0.0 < val_fraction < 1.0:
        raise IngestError("the validation fraction must be between 0 and 1")
    n_val = max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise IngestError(f"only {n} rows: too few to split into training and validation")
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])

    mean = X[train_idx].mean(axis=0)
    std = X[train_idx].std(axis=0)
    std[std < 1e-12] = 1.0
    X -= mean  # in place: the matrix is the biggest thing held
    X /= std
    Xn = X.astype(np.float32)
    del X

    info: dict = {
        "kind": "tabular",
        "task": task,
        "label_column": label,
        "columns": header,
        "feature_names": feature_names,
        "categorical": categorical,
        "input_shape": [len(feature_names)],
        "num_rows": n,
        "num_columns": len(header),
        "num_train": int(len(train_idx)),
        "num_val": int(len(val_idx)),
        "val_fraction": val_fraction,
        "split_seed": seed,
        "normalization": {"mean": mean.tolist(), "std": std.tolist()},
        "preview": {"header": header, "rows": preview_rows},
    }
    if task == "classification":
        counts = np.bincount(y, minlength=len(class_names))
        info.update(
            classes=class_names,
            num_classes=len(class_names),
            num_outputs=len(class_names),
            class_counts={c: int(k) for c, k in zip(class_names, counts)},
        )
    else:
        y_mean, y_std = float(y[train_idx].mean()), float(y[train_idx].std()) or 1.0
        info.update(num_outputs=1, target_normalization={"mean": y_mean, "std": y_std})

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, arr in {
            "X_train": Xn[train_idx],
            "X_val": Xn[val_idx],
            "y_train": y[train_idx],
            "y_val": y[val_idx],
        }.items():
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        (tmp / "info.json").write_text(json.dumps(info))
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info
