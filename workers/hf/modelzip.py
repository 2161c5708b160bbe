"""A `save_pretrained` folder uploaded as a ZIP → a checked folder on disk (no torch, no Django).

Uses the safe-archive checks it shares with image ingest (workers.datasets.archive): entry names (zip slip:
absolute paths, drive letters, backslashes, "..", control characters), links and other
non-regular entries, encrypted and duplicate entries, overlapping entries, the entry count read
before the directory is parsed, and sizes counted while streaming (headers can lie), with
per-entry, total and ratio caps. Pickle files (pytorch_model.bin and friends) are never written
to disk; the folder must hold config.json and safetensors weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from workers.datasets.archive import (
    Budget,
    CountedStream,
    Member,
    check_declared_size,
    check_declared_total,
    check_entry_count,
    check_overlaps,
    iter_members,
    open_zip,
)
from workers.datasets.common import IngestError, atomic_dir
from workers.hf.source import PICKLE_SUFFIXES, ModelSourceError, check_folder

LIMITS = {
    "max_entries": 10_000,
    "max_entry_bytes": 32 * 1024**3,
    "max_total_bytes": 64 * 1024**3,
    "max_ratio": 100,
    "ratio_min_bytes": 1024**2,
}
CHUNK = 1 << 20


class ModelZipError(ValueError):
    """The ZIP is not an acceptable model; the message is for the user."""


def extract_model_zip(zip_path: Path, out_dir: Path, limits: dict | None = None) -> dict:
    """Extract into `out_dir` (must not exist), atomically; returns {"files", "size_bytes",
    "skipped", "model_type"}. Raises ModelZipError with the reason."""
    limits = {**LIMITS, **(limits or {})}
    try:
        with atomic_dir(out_dir) as tmp, open(zip_path, "rb") as f, open_zip(f, limits) as zf:
            entries = _scan(zf, limits)
            root = _root(entries)
            budget = Budget(limits["max_total_bytes"], "the files in the ZIP")
            skipped, written, total = [], [], 0
            for entry, parts in entries:
                if parts[: len(root)] != root:
                    skipped.append("/".join(parts))  # beside the model folder: not part of it
                    continue
                rel = parts[len(root):]
                if rel[-1].lower().endswith(PICKLE_SUFFIXES):
                    skipped.append("/".join(rel))  # never written: unpickling runs code
                    continue
                dest = tmp.joinpath(*rel)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(entry.info) as raw, open(dest, "xb") as out:
                    stream = CountedStream(raw, entry, budget, limits)
                    while chunk := stream.read(CHUNK):
                        out.write(chunk)
                written.append("/".join(rel))
                total += dest.stat().st_size
            model_type = _check_model(tmp)
    except IngestError as exc:  # archive.py's refusals, worded for the user already
        raise ModelZipError(str(exc)) from None
    return {"files": sorted(written), "size_bytes": total, "skipped": skipped, "model_type": model_type}


def _check_model(folder: Path) -> str:
    """The extracted folder is a loadable model with safetensors weights; returns its model_type."""
    try:
        has_weights = check_folder(folder, "the uploaded model")
    except ModelSourceError as exc:
        raise ModelZipError(str(exc)) from None
    if not has_weights:
        raise ModelZipError("the ZIP has no safetensors weights (model.safetensors); save the model with "
                            "save_pretrained(folder, safe_serialization=True) and zip that folder")
    return json.loads((folder / "config.json").read_text())["model_type"]


def _scan(zf, limits: dict) -> list[tuple[Member, list[str]]]:
    """The files of the archive with their path components, after archive.py's checks (the
    whole archive is refused on the first bad entry; its IngestError becomes ModelZipError)."""
    infos = zf.infolist()
    check_entry_count(infos, limits)
    files = []
    declared = 0
    for info, parts, is_dir in iter_members(infos):
        if is_dir:
            continue
        check_declared_size(info, info.filename, limits)
        declared += info.file_size
        files.append((Member(info, info.filename), parts))
    check_declared_total(declared, limits, "the files in the ZIP")
    check_overlaps(infos, getattr(zf, "start_dir", None))
    if not files:
        raise ModelZipError("the ZIP holds no files")
    return files


def _root(entries: list[tuple[Member, list[str]]]) -> list[str]:
    """The folder inside the ZIP that holds config.json: the top level or one folder down."""
    configs = sorted((parts[:-1] for _, parts in entries if parts[-1] == "config.json"), key=len)
    if not configs:
        raise ModelZipError("the ZIP has no config.json: zip the folder that save_pretrained wrote")
    root = configs[0]
    if len(root) > 1:
        raise ModelZipError("config.json must be at the top of the ZIP or in one folder at the top")
    return root
