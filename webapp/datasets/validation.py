"""Checks made in the upload request itself; the full parse happens in the ingest task."""

from __future__ import annotations

import re
from pathlib import Path

from models_zoo.kinds import KINDS

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
NL = b"\n"


class DatasetError(ValueError):
    """A problem with an upload, worded for the user."""


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(HEAD_BYTES)


HEAD_BYTES = 64 * 1024  # what detection reads of a file


def detect_kind(path: Path, filename: str) -> str:
    """Guess the dataset kind from the file name and its first bytes (the user may override)."""
    return detect_kind_of_head(_head(path), filename)


def detect_kind_of_head(head: bytes, filename: str) -> str:
    """`detect_kind` on the file's first HEAD_BYTES (the upload page asks before it sends)."""
    suffix = Path(filename).suffix.lower()
    head = head[:HEAD_BYTES]
    if suffix == ".zip":
        return "image"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "chat" if _looks_like_chat(head) else "text"
    if suffix in {".text", ".md"}:
        return "corpus"
    first = head.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff").lower()
    delimiter = "\t" if suffix in {".tsv", ".tab"} or "\t" in first else ","
    columns = [c.strip().strip('"') for c in first.split(delimiter)]
    if suffix == ".txt" and (len(columns) < 2 or not all(_is_column_name(c) for c in columns)):
        return "corpus"  # prose (with a comma here and there) rather than a header row
    if "text" in columns or "sentence" in columns or "review" in columns:
        return "text"
    if _looks_like_sequences(head, delimiter, columns):
        return "sequence"
    return "tabular"


def _looks_like_chat(head: bytes) -> bool:
    """JSON Lines whose first record is a conversation ("messages", or "prompt" and "response")."""
    import json

    line = head.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff")
    try:
        first = json.loads(line)
    except ValueError:
        return False
    return isinstance(first, dict) and ("messages" in first or {"prompt", "response"} <= set(first))


def _is_column_name(cell: str) -> bool:
    return 0 < len(cell) <= 40 and len(cell.split()) <= 3


_STEP = re.compile(r"^[a-z_]*?(\d+)$")


def _looks_like_sequences(head: bytes, delimiter: str, columns: list[str]) -> bool:
    """Many numbered columns (t0, t1, ... or x1, x2, ...) in order, or a header-less file of
    numbers: rows that are series. Anything else is a table (the user can override)."""
    def numeric(c: str) -> bool:
        try:
            float(c)
        except ValueError:
            return False
        return True

    if len(columns) >= 9 and all(numeric(c) for c in columns):
        return True
    numbered = [m.group(1) for c in columns if (m := _STEP.match(c))]
    if len(numbered) < 8 or len(numbered) < len(columns) - 1:
        return False
    steps = [int(n) for n in numbered]
    return steps == list(range(steps[0], steps[0] + len(steps)))


def sniff_upload(path: Path, filename: str, kind: str) -> None:
    """Cheap checks done in the web request, before anything is stored or queued."""
    suffix = Path(filename).suffix.lower()
    extensions = KINDS[kind].extensions
    if suffix not in extensions:
        allowed = ", ".join(sorted(extensions))
        raise DatasetError(f"{filename}: unsupported file type {suffix or '(none)'} for this kind of dataset; "
                           f"use {allowed}")
    if Path(path).stat().st_size == 0:
        raise DatasetError(f"{filename}: the file is empty")
    head = _head(path)
    if kind == "image":
        if not head.startswith(ZIP_MAGIC):
            raise DatasetError(f"{filename}: not a ZIP archive (the content does not match the .zip extension)")
        return
    if head.startswith(ZIP_MAGIC):
        raise DatasetError(f"{filename}: this is a ZIP archive, not a text file")
    for bom, name in ((b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if head.startswith(bom):
            raise DatasetError(f"{filename}: the file is {name} encoded (byte-order mark); save it as UTF-8")
    first = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")[:1]
    if suffix in {".jsonl", ".ndjson", ".json"} and first not in ("{", "["):
        raise DatasetError(f"{filename}: the content is not JSON (it does not start with '{{'); "
                           f"a table of texts and labels should be named .csv")
    if suffix in {".csv", ".tsv", ".tab"} and first == "{":
        raise DatasetError(f"{filename}: the content is JSON, not a table; name the file .jsonl "
                           f"if it holds one JSON object per line")
    if b"\x00" in head:
        raise DatasetError(f"{filename}: contains NUL bytes; this looks like a binary file, not text")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        cut_at_boundary = exc.reason == "unexpected end of data" and len(head) == 64 * 1024
        if not cut_at_boundary:
            raise DatasetError(
                f"{filename}: not valid UTF-8 (byte 0x{head[exc.start]:02x} at line {head.count(NL, 0, exc.start) + 1}, "
                f"offset {exc.start}); save it as UTF-8"
            ) from None
