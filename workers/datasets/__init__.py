"""Dataset ingest, one pure module per kind (no Django): validate once, write a compact cache.

`ingest(kind, source, out_dir, options, progress)` picks the module; every module writes into
`<out_dir>.partial` and renames it into place, so a failure leaves nothing behind.

options (as the web tier stores them on the Dataset): val_fraction, seed; label_column and task
(tabular, sequence), label_column and text_column (text), image_size and channels ("L"/"RGB",
or "grayscale"/"rgb") (image), level "char"/"byte" (corpus). Only images report progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from workers.datasets.common import IngestError

__all__ = ["IngestError", "ingest"]

# The image channel option as the web form and API spell it → the ingest's Pillow mode.
CHANNELS = {"grayscale": "L", "gray": "L", "l": "L", "rgb": "RGB", "auto": None}


def ingest(kind: str, source: Path, out_dir: Path, options: dict,
           progress: Callable[[int, int], None] | None = None) -> dict:
    opts = dict(options)
    if kind == "tabular":
        from workers.datasets.tabular import ingest_csv

        return ingest_csv(source, out_dir, label_column=opts.get("label_column"), task=opts.get("task"),
                          val_fraction=opts.get("val_fraction", 0.2), seed=opts.get("seed", 0))
    if kind == "image":
        from workers.datasets.images import ingest_image_zip

        channels = opts.get("channels")
        channels = CHANNELS.get(str(channels).lower(), channels) if channels else None
        return ingest_image_zip(source, out_dir, image_size=opts.get("image_size"), channels=channels,
                                val_fraction=opts.get("val_fraction", 0.2), seed=opts.get("seed", 0),
                                progress=progress)
    if kind == "text":
        from workers.datasets.text import ingest_text

        return ingest_text(source, out_dir, text_column=opts.get("text_column"),
                           label_column=opts.get("label_column"), val_fraction=opts.get("val_fraction", 0.2),
                           seed=opts.get("seed", 0))
    if kind == "corpus":
        from workers.datasets.corpus import ingest_corpus

        return ingest_corpus(source, out_dir, level=opts.get("level", "char"),
                             val_fraction=opts.get("val_fraction", 0.1))
    if kind == "sequence":
        from workers.datasets.sequences import ingest_sequences

        return ingest_sequences(source, out_dir, label_column=opts.get("label_column"), task=opts.get("task"),
                                val_fraction=opts.get("val_fraction", 0.2), seed=opts.get("seed", 0))
    raise IngestError(f"unknown dataset kind {kind!r}")
