"""What both runtimes write beside their model: the model card, sample thumbnails, validation
predictions, each file written atomically (a crash never leaves half a file under a final name).

Ownership: a run that lost its job (its lease lapsed while it was paused and another run took the
job) must not replace the live run's files. The task that runs a job sets a fence (`fenced_by`):
files are written under a temp name private to the run's attempt (`temp_path`) and moved into
place only while the run still owns the job (`move_into_place` asks the fence, which checks and
renames under the job's row lock); folders are made without their parents (`make_dir`), so a
deleted job's folder is not made again. Without a fence (tests, scripts) a plain rename.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from models_zoo.kinds import kind_of
from models_zoo.schema import shown, to_json

MODEL_CARD = "MODEL_CARD.md"
VAL_PREDICTIONS = "val_predictions.json"


class Fenced(RuntimeError):
    """This run no longer owns its job: its file was discarded, and the run must stop."""


# (tag, move): set by the task for the one job this process runs at a time (`fenced_by`).
_fence: tuple[str, Callable[[list[tuple[str, str]]], bool]] | None = None


@contextlib.contextmanager
def fenced_by(tag: str, move: Callable[[list[tuple[str, str]]], bool]):
    """While the block runs, this process's files go into place through `move(moves)`: it renames
    each (temp, final) pair while the run owns its job and returns True, or returns False and
    moves nothing. `tag` (the run's owner token) makes the temp names private to this attempt."""
    global _fence
    previous, _fence = _fence, (tag, move)
    try:
        yield
    finally:
        _fence = previous


def fence_tag() -> str:
    """The running attempt's owner token ("" without a fence): names what is private to it."""
    return _fence[0] if _fence else ""


def fenced_rename(moves: list[tuple[Path, Path]]) -> bool:
    """Rename each (src, dst) pair (files or folders) while the run owns its job: True, or False
    and nothing renamed. Without a fence a plain rename."""
    if _fence is None:
        for src, dst in moves:
            os.replace(src, dst)
        return True
    return _fence[1]([(str(src), str(dst)) for src, dst in moves])


def temp_path(path: Path) -> Path:
    """The temp name `path` is written under before it is moved into place: hidden, and private
    to this run's attempt, so two runs of one job never write the same temp file."""
    tag = f".{_fence[0]}" if _fence else ""
    return path.with_name(f".{path.name}{tag}.tmp")


def move_into_place(tmp: Path, final: Path) -> None:
    """Rename `tmp` over `final`, under the fence: a fenced run's file is deleted instead, and
    `Fenced` raised."""
    if _fence is None:
        os.replace(tmp, final)
        return
    if not _fence[1]([(str(tmp), str(final))]):
        tmp.unlink(missing_ok=True)
        raise Fenced(f"{final.name} discarded: this run no longer owns its job")


def make_dir(path: Path) -> None:
    """Make a folder of the run's output. Under a fence its parent (the job's folder, made by the
    claim) must exist: a stale run of a deleted job fails here instead of re-creating it."""
    path.mkdir(parents=_fence is None, exist_ok=True)


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write to a temp file beside `path`, then move it into place (under the fence, if any)."""
    tmp = temp_path(path)
    try:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    move_into_place(tmp, path)


def thumbnail(image: torch.Tensor | np.ndarray) -> str:
    """A uint8 CHW image as a small PNG data URI (sample gallery); tiny images are scaled up."""
    from PIL import Image

    arr = image.cpu().numpy() if isinstance(image, torch.Tensor) else np.ascontiguousarray(image)
    pil = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    if max(pil.size) < 48:
        scale = max(1, 48 // max(pil.size))
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _split(info: dict) -> str:
    if info.get("split") == "provided":
        if info.get("split_column"):
            return f" (the file's {info['split_column']!r} column)"
        return " (the archive's own train/ and val/ folders)"
    if info.get("val_fraction") is not None:
        test = f", {info['test_fraction']} test" if info.get("test_fraction") else ""
        return (f" (seeded random split, {info.get('val_fraction')} validation{test}, "
                f"seed {info.get('split_seed', 0)})")
    return ""


def _sizes(info: dict) -> str:
    train, val = info.get("num_train", info.get("num_train_tokens")), info.get("num_val", info.get("num_val_tokens"))
    if info.get("num_test"):
        return f"- training / validation / test: {train} / {val} / {info['num_test']}{_split(info)}"
    return f"- training / validation: {train} / {val}{_split(info)}"


def _config_cls(architecture: str) -> type | None:
    import models_zoo

    try:
        return models_zoo.get(architecture).config_cls
    except (models_zoo.ConfigError, ImportError):
        return None


def model_card(title: str, spec, info: dict, tc, metrics: dict, versions: list[str], usage: str,
               test_metrics: dict | None = None) -> str:
    """A short, human-readable record of what was trained on what, and how well it did.

    `spec` is the run's TrainSpec, `tc` its TrainConfig; `versions` are the libraries that made
    the model ("torch 2.5.1"; Python is added), `usage` the closing line on how to load it;
    `test_metrics` the test split's, evaluated once on this model (a section of their own)."""
    shape = f", input shape: {info['input_shape']}" if info.get("input_shape") is not None else ""
    lines = [
        f"# Model card: {title}",
        "",
        "## Data",
        *([f"- dataset: {spec.extra['dataset_name']}"] if spec.extra.get("dataset_name") else []),
        f"- kind: {info.get('kind')}, task: {info.get('task')}{shape}",
        _sizes(info),
    ]
    if info.get("classes"):
        lines.append(f"- classes ({len(info['classes'])}): {', '.join(map(str, info['classes'][:50]))}")
    if lineage := spec.extra.get("lineage"):
        lines += ["", "## Lineage", f"- continued from job {lineage.get('name', '')!s} ({lineage.get('job')}), "
                                    f"checkpoint {lineage.get('checkpoint')} after epoch {lineage.get('epoch')}"]
    # Only the settings that did something (an Adam run has no momentum, LeNet-5 only dropout).
    context = {"task": info.get("task"), "kind": kind_of(info)}
    training = shown(type(tc), to_json(tc), context)
    if spec.train_config:  # what the job stored (mixed precision only where a CUDA worker was live)
        training = {k: v for k, v in training.items() if k in spec.train_config}
    lines += ["", "## Architecture", *(f"- {k}: {v}" for k, v in shown(_config_cls(spec.architecture),
                                                                        spec.model_config, context).items()),
              "", "## Training", *(f"- {k}: {v}" for k, v in training.items()),
              "", "## Validation metrics",
              *(f"- {k}: {v:.6g}" for k, v in metrics.items() if isinstance(v, (int, float))),
              *(["", "## Test metrics", "The held-out test split, evaluated once on this model after training "
                 "(never used for early stopping or to pick the epoch).",
                 *(f"- {k}: {v:.6g}" for k, v in test_metrics.items() if isinstance(v, (int, float)))]
                if test_metrics else []),
              "", "## Versions", f"- {', '.join([*versions, f'Python {platform.python_version()}'])}",
              "", usage, ""]
    return "\n".join(lines)


def val_predictions(pred, conf, classes: list[str]) -> list[dict]:
    """Per validation row (in order): the predicted class and its probability."""
    return [{"index": i, "prediction": classes[int(p)], "confidence": round(float(c), 6)}
            for i, (p, c) in enumerate(zip(pred, conf))]


def write_val_predictions(art: Path, predictions: list[dict]) -> str:
    write_atomic(art / VAL_PREDICTIONS, json.dumps(predictions))
    return VAL_PREDICTIONS
