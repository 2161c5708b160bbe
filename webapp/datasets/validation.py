"""Checks made in the upload request itself; the full parse happens in the ingest task."""

from __future__ import annotations

from pathlib import Path


class DatasetError(ValueError):
    """A problem with an upload, worded for the user."""


def sniff_upload(path: Path, filename: str) -> None:
    """Cheap checks done in the web request, before anything is stored or queued."""
    suffix = Path(filename).suffix.lower()
    if suffix not in {".csv", ".tsv", ".tab", ".txt"}:
        raise DatasetError(f"{filename}: unsupported file type {suffix or '(none)'}; upload a .csv or .tsv file")
    if Path(path).stat().st_size == 0:
        raise DatasetError(f"{filename}: the file is empty")
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    if b"\x00" in head:
        raise DatasetError(f"{filename}: contains NUL bytes; this looks like a binary file, not CSV")
    if head.startswith(b"PK\x03\x04"):
        raise DatasetError(f"{filename}: this is a ZIP archive, not a CSV file")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        cut_at_boundary = exc.reason == "unexpected end of data" and len(head) == 64 * 1024
        if not cut_at_boundary:
            raise DatasetError(
                f"{filename}: not valid UTF-8 (byte 0x{head[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
            ) from None
