"""A `save_pretrained` folder uploaded as a ZIP → a checked folder on disk (no torch, no Django).

Uses the safe-archive checks it shares with image ingest and the upload request (models_zoo.archive): entry names (zip slip:
absolute paths, drive letters, backslashes, "..", control characters), links and other
non-regular entries, encrypted and duplicate entries, overlapping entries, the entry count read
before the directory is parsed, and sizes counted while streaming (headers can lie), with
per-entry, total and ratio caps. Pickle files (pytorch_model.bin and friends) are never written
to disk; the folder must hold config.json and safetensors weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from models_zoo.archive import (
    MODEL_ZIP_LIMITS,
    NO_WEIGHTS,
    Budget,
    CountedStream,
    ModelZipError,
    open_zip,
    scan_model_zip,
)
from models_zoo.contracts import PICKLE_SUFFIXES, IngestError, ModelSourceError, check_folder
from workers.datasets.common import atomic_dir

__all__ = ["ModelZipError", "extract_model_zip"]
CHUNK = 1 << 20


def extract_model_zip(zip_path: Path, out_dir: Path, limits: dict | None = None) -> dict:
    """Extract into `out_dir` (must not exist), atomically; returns {"files", "size_bytes",
    "skipped", "model_type"}. Raises ModelZipError with the reason."""
    limits = {**MODEL_ZIP_LIMITS, **(limits or {})}
    try:
        with atomic_dir(out_dir) as tmp, open(zip_path, "rb") as f, open_zip(f, limits) as zf:
            entries, root = scan_model_zip(zf, limits)
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
        raise ModelZipError(NO_WEIGHTS)
    return json.loads((folder / "config.json").read_text())["model_type"]
