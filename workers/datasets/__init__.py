"""Dataset ingest, one pure module per kind (no Django): validate once, write a compact cache.

`ingest(kind, source, out_dir, options, progress)` picks the kind's module from the kinds
registry (`models_zoo.kinds`), checks the stored options with the kind's options Config (the
same class the upload form and the API validated them with) and calls it. Every module writes
into `<out_dir>.partial` and renames it into place, so a failure leaves nothing behind.
Only images report progress.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

from models_zoo import kinds
from workers.datasets.common import IngestError

__all__ = ["IngestError", "ingest"]


def ingest(kind: str, source: Path, out_dir: Path, options: dict,
           progress: Callable[[int, int], None] | None = None, max_cache_bytes: int | None = None,
           processes: int | None = None) -> dict:
    """`max_cache_bytes`: what the owner may still store; kinds that know their cache's size
    before writing it (images: N × C × H × W) refuse beforehand, the caller checks the others'
    (which grow with the file already counted) once written."""
    try:
        entry = kinds.get(kind)
        kwargs = kinds.ingest_arguments(kind, options)
    except kinds.OptionsError as exc:
        raise IngestError(str(exc)) from None
    if kind == "image":
        kwargs["progress"] = progress
        kwargs["max_cache_bytes"] = max_cache_bytes
        kwargs["processes"] = processes  # decoding processes (the worker's setting; None = its CPUs)
    function = getattr(importlib.import_module(f"workers.datasets.{entry.ingest_module}"), entry.ingest_function)
    return function(source, out_dir, **kwargs)
