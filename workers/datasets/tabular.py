"""CSV/TSV ingest: validate once, convert to a compact numeric cache plus an info dict.

Pure Python + numpy (no Django, no torch). Output directory layout:
    X_train.npy X_val.npy (float32, standardised)  y_train.npy y_val.npy  info.json
Everything is written to a temporary sibling directory and renamed into place (common.atomic_dir),
so a failure leaves nothing behind.

Split: a column named "split" (any case; the `split_column` option may name another) decides each
row's split (train, val / validation, test) and is never a feature. Without one: seeded. A
classification table is stratified like the other kinds (every class with at least two rows in
both splits), holding out max(1, round(rows × val_fraction)) rows in all as an unstratified split
would; a regression table gets a seeded permutation of its rows. `test_fraction` holds out test
rows first, the same way (common.seeded_splits). The test split, when there is one, is written as
X_test.npy / y_test.npy.

Missing values: an empty feature cell is refused (naming its line and column) unless
`missing="impute"`: then a numeric column's empty cells get the median of its training rows, a
string column's the most frequent training value, and every column that had an empty cell gets a
missing-indicator feature ("<column> (missing)": 1 where the cell was empty), appended after the
other features. The statistics come from the training split only (before standardisation) and
are stored in info["missing"] ("fill" holds one per column), so inference fills an empty input
field the same way. Labels and split values are never imputed.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workers.datasets.common import (
    IngestError,
    LineNames,
    atomic_dir,
    check_fractions,
    check_labels,
    find_split_column,
    is_number,
    label_targets,
    split_code,
    split_rows,
    target_info,
)

MAX_ROWS = 5_000_000
MAX_COLUMNS = 2_000
MAX_FIELD_BYTES = 1_000_000
MAX_CATEGORIES = 100  # distinct values in a string feature column before we refuse it
MISSING_SUFFIX = " (missing)"  # a missing-indicator feature is named "<column> (missing)"
MISSING_MODES = ("refuse", "impute")
PREVIEW_ROWS = 10
FILL_BLOCK_ROWS = 4096  # rows parsed per numpy call in pass 2: bounded Python lists, few calls


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
    headerless = header_row is None and all(is_number(h) for h in header)
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

    __slots__ = ("empty", "first_empty", "first_text", "numeric", "values", "_seen")

    def __init__(self):
        self.empty = 0  # empty cells
        self.first_empty: int | None = None
        self.first_text: tuple[int, str] | None = None
        self.numeric = True
        self.values: set[str] | None = set()  # None: more than MAX_CATEGORIES
        self._seen = 0

    def see(self, cell: str, line: int) -> None:
        if cell == "":
            self.empty += 1
            if self.first_empty is None:
                self.first_empty = line
            return
        if self.numeric and not is_number(cell):
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
    split_column: str | None = None,
    test_fraction: float = 0.0,
    missing: str = "refuse",
) -> dict:
    """Validate `source` and write the cache into `out_dir` (which must not exist). Returns info."""
    # Pass 1 streams the rows and keeps what decides each column (numeric, or its categories) and
    # the labels; pass 2 parses the cells straight into the float matrix. The rows themselves are
    # never all held as Python strings (many times the file's size).
    source = Path(source)
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    if missing not in MISSING_MODES:
        raise IngestError(f"missing must be refuse or impute, not {missing!r}")
    header, records = iter_table(source)
    split_col = find_split_column(header, split_column)
    label = _label_column(header, label_column, split_col)
    feature_cols = [h for h in header if h not in (label, split_col)]
    if not feature_cols:
        raise IngestError(f"no feature columns: the table has only the label ({label!r}) and split "
                          f"({split_col!r}) columns")
    scan = _scan_rows(records, header, label, feature_cols, split_col)
    task, numeric_label = check_labels(scan.labels, LineNames(scan.lines), label, task)
    feature_names, categorical = _feature_layout(feature_cols, scan.stats, missing, header)
    X = _feature_matrix(source, header, feature_cols, categorical, scan.n, len(feature_names))
    y, class_names = label_targets(scan.labels, label, task, numeric_label)
    n, preview_rows, codes, stats = scan.n, scan.preview_rows, scan.split_codes(), scan.stats
    del scan  # the per-row label strings and line numbers: from here on y is all that is needed

    # A seeded split of a classification table is stratified, like every other kind's, with as many
    # validation rows in all as an unstratified split would hold out; regression keeps a permutation.
    classification = task == "classification"
    train_idx, val_idx, test_idx, split = split_rows(
        n, codes, split_col, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
        y=y if classification else None, classes=class_names if classification else None, exact_total=True)
    # Imputed before standardising (the mean and std then include the filled cells, as inference sees them).
    imputed = _impute(X, feature_cols, categorical, stats, feature_names, train_idx) if missing == "impute" else None
    X, mean, std = _standardise(X, train_idx)  # rebinding X frees the float64 matrix

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
        **split,
        "normalization": {"mean": mean.tolist(), "std": std.tolist()},
        "preview": {"header": header, "rows": preview_rows},
    }
    info.update(target_info(task, y, train_idx, class_names))
    if imputed is not None:
        info["missing"] = imputed

    with atomic_dir(out_dir) as tmp:
        # One split at a time: each fancy-indexed copy is freed before the next is made.
        parts = [("train", train_idx), ("val", val_idx)] + ([("test", test_idx)] if len(test_idx) else [])
        for (part, idx), (prefix, data) in ((p, d) for p in parts for d in (("X", X), ("y", y))):
            np.save(tmp / f"{prefix}_{part}.npy", data[idx], allow_pickle=False)
        (tmp / "info.json").write_text(json.dumps(info))
    return info


def _label_column(header: list[str], wanted: str | None, split_col: str | None = None) -> str:
    """The user's label column (it must exist), else the first named "label" (any case), else the
    last that is not the split column."""
    named = [h for h in header if h.lower() == "label"]
    label = wanted or (named[0] if named else [h for h in header if h != split_col][-1])
    if label not in header:
        raise IngestError(f"label column {label!r} does not exist; columns are: {', '.join(header)}")
    if label == split_col:
        raise IngestError(f"the split column {split_col!r} cannot also be the label column")
    return label


@dataclass
class _Scan:
    """What pass 1 keeps: per feature column its stats, per row its label and the line it starts
    on (for messages), and the first rows for the preview."""

    stats: list[_ColumnStats]
    labels: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    preview_rows: list[list[str]] = field(default_factory=list)
    splits: bytearray = field(default_factory=bytearray)  # each row's split code, with a split column

    @property
    def n(self) -> int:
        return len(self.labels)

    def split_codes(self) -> np.ndarray:
        return np.frombuffer(bytes(self.splits), dtype=np.uint8)


def _scan_rows(records, header: list[str], label: str, feature_cols: list[str], split_col: str | None = None) -> _Scan:
    li = header.index(label)
    si = header.index(split_col) if split_col is not None else None
    feature_idx = [header.index(name) for name in feature_cols]
    scan = _Scan([_ColumnStats() for _ in feature_cols])
    for line, row in records:
        scan.labels.append(row[li])
        scan.lines.append(line)
        if si is not None:
            scan.splits.append(split_code(row[si], f"line {line}", split_col))
        if len(scan.preview_rows) < PREVIEW_ROWS:
            scan.preview_rows.append(row)
        for st, ci in zip(scan.stats, feature_idx):
            st.see(row[ci], line)
    return scan


def _feature_layout(feature_cols: list[str], stats: list[_ColumnStats], missing: str = "refuse",
                    header: list[str] = ()) -> tuple[list[str], dict[str, list[str]]]:
    """(feature names, categories of each string column): numeric columns as they are, string
    columns one-hot encoded ("colour=red"), then (missing="impute") one missing indicator per
    column with an empty cell. Refuses empty cells (unless imputed), columns with no value at all
    and string columns with too many distinct values."""
    feature_names: list[str] = []
    categorical: dict[str, list[str]] = {}
    for name, st in zip(feature_cols, stats):
        if st.first_empty is not None and missing != "impute":
            raise IngestError(f"line {st.first_empty}, column {name!r}: empty value (fill or drop missing values, "
                              f"or upload with missing=impute to impute them from the training rows)")
        if st.values is not None and not st.values:
            raise IngestError(f"column {name!r} is empty in every row")
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
    taken = {*header, *feature_names}
    for name, st in zip(feature_cols, stats):
        if st.empty:
            indicator = name + MISSING_SUFFIX
            while indicator in taken:  # a column already named so: keep both
                indicator += "'"
            taken.add(indicator)
            feature_names.append(indicator)
    return feature_names, categorical


def _impute(X: np.ndarray, feature_cols: list[str], categorical: dict[str, list[str]], stats: list[_ColumnStats],
            feature_names: list[str], train_idx: np.ndarray) -> dict:
    """Fill the empty cells in place (NaN in a numeric column, an all-zero one-hot block in a
    string one) with the training rows' median / most frequent value, and set each indicator
    column. Returns info["missing"]: the fill value of every column (inference fills an empty
    field with it) and, per column that had empty cells, how many and its indicator."""
    fills: dict[str, float | str] = {}
    columns: dict[str, dict] = {}
    j = 0
    ind = sum(len(categorical[c]) if c in categorical else 1 for c in feature_cols)
    for name, st in zip(feature_cols, stats):
        width = len(categorical[name]) if name in categorical else 1
        block = X[:, j : j + width]  # a view: filled in place
        empty = (block.sum(1) == 0) if name in categorical else np.isnan(block[:, 0])
        if empty[train_idx].all():
            raise IngestError(f"column {name!r} has no value in the training rows: nothing to impute it from")
        if name in categorical:
            k = int(np.argmax(block[train_idx].sum(0)))  # the most frequent; ties: the first in sorted order
            fill: float | str = categorical[name][k]
            block[empty, k] = 1.0
        else:
            fill = float(np.median(block[train_idx, 0][~empty[train_idx]]))
            block[empty, 0] = fill
        fills[name] = fill
        if st.empty:
            X[:, ind] = empty
            columns[name] = {"fill": fill, "statistic": "most frequent" if name in categorical else "median",
                             "cells": int(st.empty), "train_cells": int(empty[train_idx].sum()),
                             "indicator": feature_names[ind]}
            ind += 1
        j += width
    return {"strategy": "impute", "source": "the training rows", "fill": fills, "columns": columns,
            "indicators": [c["indicator"] for c in columns.values()],
            "cells": int(sum(c["cells"] for c in columns.values()))}


def _feature_matrix(source: Path, header: list[str], feature_cols: list[str], categorical: dict[str, list[str]],
                    n: int, width: int) -> np.ndarray:
    """Pass 2: the float64 matrix [n, width], parsed block by block (the file was fully checked
    by pass 1, so nothing here can fail on the user's data)."""
    X = np.zeros((n, width), dtype=np.float64)
    # (cell index, {category: offset} or None for a numeric column), in feature order.
    columns = [(header.index(name), {v: k for k, v in enumerate(categorical[name])} if name in categorical else None)
               for name in feature_cols]
    _, records = iter_table(source)
    block: list[list[str]] = []
    done = 0
    for _, row in records:
        block.append(row)
        if len(block) == FILL_BLOCK_ROWS:
            _fill(X, columns, block, done)
            done += len(block)
            block = []
    if block:
        _fill(X, columns, block, done)
    return X


def _fill(X: np.ndarray, columns: list[tuple[int, dict[str, int] | None]], block: list[list[str]], start: int) -> None:
    rows = np.arange(start, start + len(block))
    j = 0
    for ci, index in columns:
        # An empty cell (only with missing="impute"; pass 1 refused it otherwise) stays NaN / all zeros.
        if index is not None:
            codes = np.fromiter((index.get(r[ci], -1) for r in block), dtype=np.int64, count=len(block))
            present = codes >= 0
            X[rows[present], j + codes[present]] = 1.0
            j += len(index)
        else:
            X[start : start + len(block), j] = np.asarray([r[ci] or "nan" for r in block], dtype=np.float64)
            j += 1


def _standardise(X: np.ndarray, train_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float32 X standardised with the training rows' mean and std, mean, std)."""
    mean = X[train_idx].mean(axis=0)
    std = X[train_idx].std(axis=0)
    std[std < 1e-12] = 1.0
    X -= mean  # in place: the matrix is the biggest thing held
    X /= std
    return X.astype(np.float32), mean, std
