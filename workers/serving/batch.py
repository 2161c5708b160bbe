"""Try many (DIGITS' "classify many"): every input of one file through a trained zoo model, into
a CSV of predictions (no Django).

`predict_file(artifact_dir, source, out, progress=None)` reads `source` in the format of the
model's dataset with the ingest's own readers and checks (`workers.datasets`: UTF-8 and NUL
checks, field-size, row and column caps, line numbers; the ZIP checks of `models_zoo.archive`),
prepares each input exactly as a single try does (`workers.serving.predict.prepare_*`) and
writes one CSV row per input, in order:

    tabular   a CSV/TSV with a header naming the training columns (others, such as the label,
              are ignored); `line` is the file line of the row
    sequence  a CSV of rows of numbers, as the training file (the label column, when present,
              is ignored)
    text      a CSV/TSV/JSONL with a text column (the dataset's, or text/sentence/review/content,
              or the only column)
    image     a ZIP of images (any folders); `file` is the entry's name

An input that cannot be prepared (a value that is not a number, an image that does not decode)
gets its message in the `error` column and the others go on; the file as a whole is refused
(`InputError`) when it cannot be read at all. Cells that would start a spreadsheet formula are
prefixed with a quote.
"""

from __future__ import annotations

import csv
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from models_zoo.contracts import IngestError, raw_columns
from workers.serving import predict as single
from workers.serving.predict import InputError

CHUNK = 256  # inputs per forward pass
MAX_INPUTS = 100_000  # per file
PROGRESS_EVERY = 0.5  # seconds between progress callbacks
PROBLEMS_KEPT = 20
TEXT_NAMES = ("text", "sentence", "review", "content")


def _safe(cell) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula."""
    text = str(cell)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _delimiter(source: Path) -> str | None:
    return "\t" if source.suffix.lower() in (".tsv", ".tab") else None


def _table_rows(source: Path, info: dict) -> Iterator[tuple[str, object]]:
    from workers.datasets.tabular import iter_table

    header, records = iter_table(source, _delimiter(source), max_rows=MAX_INPUTS)
    columns = raw_columns(info)
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(f"the header lacks the training column(s) {', '.join(repr(c) for c in missing[:10])}; "
                         f"the model reads: {', '.join(columns[:30])}")
    index = [header.index(c) for c in columns]
    for line, row in records:
        yield f"line {line}", {c: row[i] for c, i in zip(columns, index)}


def _sequence_rows(source: Path, info: dict) -> Iterator[tuple[str, object]]:
    from workers.datasets.tabular import iter_table

    length = int(info["input_shape"][0])
    header, records = iter_table(source, _delimiter(source), header_row=None, max_columns=length + 2,
                                 max_rows=MAX_INPUTS)
    skip = {info.get("label_column"), "label", "split"} - {None}
    keep = [i for i, h in enumerate(header) if h not in skip] if len(header) != length else list(range(length))
    if len(keep) != length:
        raise InputError(f"each row needs the {length} values of one sequence (and at most a label column); "
                         f"this file has {len(header)} columns")
    for line, row in records:
        yield f"line {line}", ",".join(row[i] for i in keep)


def _text_rows(source: Path, info: dict) -> Iterator[tuple[str, object]]:
    from workers.datasets import text as reader
    from workers.datasets.tabular import iter_table

    if reader._format(source) == "csv":
        header, records = iter_table(source, _delimiter(source), max_rows=MAX_INPUTS) if len(
            _first_line(source).split(_delimiter(source) or ",")) > 1 else _one_column(source)
        column = _text_column(header, info)
        i = header.index(column)
        for line, row in records:
            yield f"line {line}", row[i]
        return
    header, items, where = reader._read_json(source)
    column = _text_column(header, info)
    if len(items) > MAX_INPUTS:
        raise InputError(f"{len(items)} records; at most {MAX_INPUTS} per file")
    for obj, w in zip(items, where):
        if column not in obj:
            raise InputError(f"{w}: no {column!r} field (the text)")
        yield w, reader._json_value(obj[column], w, column, "text")


def _first_line(source: Path) -> str:
    with open(source, "rb") as f:
        return f.readline(64 * 1024).decode("utf-8", errors="replace")


def _one_column(source: Path):
    """A CSV of one column (a header, then one text per row): the table reader wants two."""
    from workers.datasets.tabular import MAX_FIELD_BYTES, _csv_problem, _decoded_lines

    csv.field_size_limit(MAX_FIELD_BYTES)
    reader = csv.reader(_decoded_lines(source), strict=True)
    header = [h.strip() for h in next(reader, [""])[:1]]

    def records():
        n = 0
        try:
            for row in reader:
                if row and row[0].strip():
                    n += 1
                    if n > MAX_INPUTS:
                        raise InputError(f"line {reader.line_num}: past the limit of {MAX_INPUTS} inputs")
                    yield reader.line_num, [row[0].strip()]
        except csv.Error as exc:
            raise _csv_problem(exc, reader.line_num) from None
    return header, records()


def _text_column(header: list[str], info: dict) -> str:
    wanted = info.get("text_column")
    for name in ([wanted] if wanted else []) + list(TEXT_NAMES):
        if name in header:
            return name
    if len(header) == 1:
        return header[0]
    raise InputError(f"no text column: name it {info.get('text_column') or 'text'} (the columns are: "
                     f"{', '.join(header[:20])})")


def _image_entries(source: Path) -> Iterator[tuple[str, object]]:
    """(entry name, image bytes or the InputError of that entry), the archive checked as the
    ingest checks it (entry count, names, declared and counted sizes, ratio)."""
    from models_zoo import archive
    from workers.datasets import images

    limits = {"max_entries": images.MAX_ENTRIES, "max_total_bytes": images.MAX_TOTAL_BYTES,
              "max_entry_bytes": images.MAX_ENTRY_BYTES, "max_ratio": images.MAX_RATIO,
              "ratio_min_bytes": images.RATIO_MIN_BYTES}
    with open(source, "rb") as f, archive.open_zip(f, limits) as zf:
        infos = zf.infolist()
        archive.check_entry_count(infos, limits)
        entries = []
        for info, parts, is_dir in archive.iter_members(infos):
            if is_dir or archive.is_junk(parts) or os.path.splitext(parts[-1])[1].lower() not in images.IMAGE_EXTENSIONS:
                continue
            archive.check_declared_size(info, info.filename, limits)
            entries.append(archive.Member(info, info.filename))
        archive.check_overlaps(infos, getattr(zf, "start_dir", None))
        if not entries:
            raise InputError("the ZIP holds no images (PNG, JPEG, BMP or WebP)")
        if len(entries) > MAX_INPUTS:
            raise InputError(f"{len(entries)} images; at most {MAX_INPUTS} per file")
        budget = archive.Budget(limits["max_total_bytes"], "the images in the ZIP")
        for entry in entries:
            yield entry.name, archive.read_entry(zf, entry, budget, limits)


READERS = {"tabular": _table_rows, "sequence": _sequence_rows, "text": _text_rows}


def _prepare(loaded, kind: str, raw):
    info = loaded.info
    if kind == "tabular":  # encoded here, standardised per chunk (one tensor, not one per row)
        return single.feature_row(raw, info)
    if kind == "sequence":
        return single.prepare_sequence(raw, info)
    if kind == "text":
        return single.prepare_text(raw, info, loaded.index or {})[0]
    return single.prepare_image(raw, info)


def _forward(loaded, kind: str, prepared: list):
    import torch

    x = single.standardise_features(prepared, loaded.info) if kind == "tabular" else torch.cat(prepared)
    with torch.no_grad():
        return loaded.model(x).float()


class _Writer:
    def __init__(self, f, loaded, kind: str):
        self.csv = csv.writer(f)
        self.classes = loaded.config.get("class_names") or loaded.info.get("classes") or []
        self.task = loaded.task
        self.norm = loaded.info.get("target_normalization")
        where = "file" if kind == "image" else "line"
        self.csv.writerow([where, "prediction", "confidence", "error"] if self.task == "classification"
                          else [where, "prediction", "error"])

    def outputs(self, items: list[tuple[str, object]], out) -> None:
        if self.task == "classification":
            conf, idx = out.softmax(1).max(1)
            for (where, _), c, i in zip(items, conf.tolist(), idx.tolist()):
                label = self.classes[i] if i < len(self.classes) else i
                self.csv.writerow([_safe(where), _safe(label), f"{c:.6f}", ""])
        else:
            for (where, _), v in zip(items, out[:, 0].tolist()):
                self.csv.writerow([_safe(where), repr(v * self.norm["std"] + self.norm["mean"]), ""])

    def failed(self, where: str, message: str) -> None:
        self.csv.writerow([_safe(where), "", "", _safe(message)] if self.task == "classification"
                          else [_safe(where), "", _safe(message)])


def predict_file(directory: str | Path, source: str | Path, out: str | Path,
                 progress: Callable[[int, int | None], None] | None = None) -> dict:
    """Predict every input of `source` into the CSV `out` (written atomically); returns
    {"rows", "failed", "problems"} (the first bad inputs, each "line 5: message")."""
    loaded = single.load(directory)
    if loaded.task == "lm":
        raise InputError("try many is for classifiers and regressors, not language models")
    kind = loaded.kind
    source, out = Path(source), Path(out)
    try:
        inputs = list(_image_entries(source) if kind == "image" else READERS[kind](source, loaded.info))
    except KeyError:
        raise InputError(f"try many cannot read inputs of {kind} datasets") from None
    except (IngestError, zipfile.BadZipFile) as exc:
        raise InputError(str(exc)) from None
    if not inputs:
        raise InputError("the file holds no inputs")
    total, done, failed, problems = len(inputs), 0, 0, []
    last = time.monotonic()
    if progress:
        progress(0, total)
    tmp = out.with_name(out.name + ".partial")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = _Writer(f, loaded, kind)
            for start in range(0, total, CHUNK):
                ready, tensors = [], []
                for where, raw in inputs[start:start + CHUNK]:
                    try:
                        tensors.append(_prepare(loaded, kind, raw))
                        ready.append((where, raw))
                    except InputError as exc:
                        if ready:  # keep the file's order: predict what came before this one first
                            writer.outputs(ready, _forward(loaded, kind, tensors))
                            ready, tensors = [], []
                        writer.failed(where, str(exc))
                        failed += 1
                        if len(problems) < PROBLEMS_KEPT:
                            problems.append(f"{where}: {exc}")
                if ready:
                    writer.outputs(ready, _forward(loaded, kind, tensors))
                done = min(total, start + CHUNK)
                if progress and time.monotonic() - last >= PROGRESS_EVERY:
                    last = time.monotonic()
                    progress(done, total)
                for i in range(start, done):  # images: their bytes are not needed any more
                    inputs[i] = (inputs[i][0], None)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if failed == total:
        out.unlink(missing_ok=True)
        raise InputError(f"no input could be predicted; {problems[0]}" if problems else "no input could be predicted")
    return {"rows": total, "failed": failed, "problems": problems}
