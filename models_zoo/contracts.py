"""Rules both tiers apply, in one torch-free, Django-free module.

The web tier checks a request with these before it stores anything or queues a task; the worker
applies the same ones before it loads a file or a model. Keeping them here (and not in the worker
packages) is what lets `webapp/` never import `workers.*`: the web sends tasks by name and
imports only `models_zoo` contracts. Nothing here imports torch, Django, webapp or workers.

    input limits           MAX_IMAGE_BYTES, MAX_TEXT_CHARS, MAX_GENERATE (try the model)
    ONNX support table     onnx_unsupported(config)
    raw columns            raw_columns(info)  (a table's feature columns before one-hot)
    imputation             fill_values(info)  (what an empty input field becomes, ingest's imputation)
    HF folder checks       check_folder(folder, label), ModelSourceError, PICKLE_SUFFIXES
    a full disk            is_disk_full(exc), disk_full_message(worker, writing) (one wording everywhere)
"""

from __future__ import annotations

import errno

import json
from pathlib import Path

__all__ = ["MAX_GENERATE", "MAX_IMAGE_BYTES", "MAX_TEXT_CHARS", "PICKLE_SUFFIXES", "ModelSourceError",
           "check_folder", "fill_values", "has_safetensors", "onnx_unsupported", "raw_columns"]

# -- input limits of a try ------------------------------------------------------------------
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_TEXT_CHARS = 20_000
MAX_GENERATE = 1000  # tokens a language model may generate for one try


# -- the ONNX support table -----------------------------------------------------------------
def onnx_unsupported(config: dict) -> str:
    """Why a model (its exported config.json) cannot be exported to ONNX, or "" when it can.

    The job page shows the reason instead of an export button; the export task refuses the same.
    """
    if config.get("architecture") == "rnn" and config.get("dataset", {}).get("kind") == "text":
        return ("RNN text classifiers run on packed variable-length sequences (pack_padded_sequence), "
                "which neither ONNX exporter of this PyTorch version can trace")
    if str(config.get("architecture", "")).startswith("hf_"):
        return "Hugging Face models are exported as a save_pretrained folder (model.zip), not by this exporter"
    return ""


# -- raw columns of a table -------------------------------------------------------------------
def raw_columns(info: dict) -> list[str]:
    """The table's feature columns in file order (numeric ones, and string ones before one-hot;
    not the missing indicators an imputing ingest appended).

    `info` is the dataset block of config.json; the try form asks one value per raw column and
    the worker encodes them the way the ingest did.
    """
    categorical = info.get("categorical") or {}
    indicators = set((info.get("missing") or {}).get("indicators") or ())
    names, seen = [], set()
    for name in info["feature_names"]:
        if name in indicators:
            continue
        column = name.split("=", 1)[0] if "=" in name and name.split("=", 1)[0] in categorical else name
        if column not in seen:
            seen.add(column)
            names.append(column)
    return names


def fill_values(info: dict) -> dict:
    """{column: the value an empty input field gets} for a dataset ingested with missing=impute
    (the training rows' median / most frequent value; sequences: one per step, keyed by index),
    {} otherwise: then an empty field is refused, as the ingest refused empty cells."""
    missing = info.get("missing") or {}
    if missing.get("strategy") != "impute":
        return {}
    fill = missing.get("fill") or {}
    return dict(enumerate(fill)) if isinstance(fill, list) else dict(fill)


# -- Hugging Face folder checks ---------------------------------------------------------------
# Weights formats that unpickle (and so may run code) when loaded: never loaded, never extracted.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".h5", ".msgpack")


class IngestError(ValueError):
    """A problem with the user's file (a dataset or an archive), worded for the user; the
    dataset ingest modules (workers.datasets.common) raise it too."""


class ModelSourceError(ValueError):
    """A model that cannot (or must not) be loaded; the message is for the user."""


def has_safetensors(folder: Path) -> bool:
    return any(Path(folder).glob("*.safetensors"))


def check_folder(folder: Path, label: str) -> bool:
    """Refuse what must not be loaded; returns whether the folder holds weights (a folder with a
    config only is a random initialisation of that architecture).

    The admin's registration form runs it on the web host, the worker before every load, and the
    model-ZIP extraction on the freshly extracted folder: one rule for all three.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelSourceError(f"{label}: the folder {folder} does not exist on the worker")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelSourceError(f"{label} is not a save_pretrained folder: it has no config.json")
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelSourceError(f"{label}: config.json is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ModelSourceError(f"{label}: config.json names no model_type")
    if config.get("auto_map"):
        raise ModelSourceError(f"{label} needs its own Python code (auto_map in config.json); Trainyard never "
                               f"runs a model's code (trust_remote_code is off)")
    if has_safetensors(folder):
        return True
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ModelSourceError(
            f"{label} has only pickle weights ({', '.join(pickles[:3])}), which Trainyard refuses to load "
            f"(unpickling can run arbitrary code); convert it to safetensors first "
            f"(model.save_pretrained(folder, safe_serialization=True)) and add model.safetensors")
    return False


# --- A full disk, in one wording -------------------------------------------------------------
# One readable wording for a full disk, whoever hit it: the checkpoint writer, the artifact
# export (safetensors, ONNX, the model card), dataset ingest. The raw errors differ (OSError
# ENOSPC / EDQUOT / EFBIG, safetensors' SafetensorError carrying the OS message, torch.save's
# RuntimeError around a failed write); the user needs the same three facts from each: the disk is
# full, where, and what to do (free space, then Retry: the job resumes from its last checkpoint).


FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
FULL_TEXTS = ("no space left on device", "disk quota exceeded", "file too large", "os error 28",
              "errno 28", "enospc")


def is_disk_full(exc: BaseException | None) -> bool:
    """True when `exc`, or any exception it was raised from, is a full disk."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and getattr(exc, "errno", None) in FULL_ERRNOS:
            return True
        if getattr(exc, "errno", None) in FULL_ERRNOS:  # e.g. CheckpointError keeps the errno
            return True
        if any(t in str(exc).lower() for t in FULL_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_message(worker: str, writing: str, then: str = "press Retry on the job page (it resumes "
                                                                   "from its last checkpoint)") -> str:
    return f"the disk is full on worker {worker} while writing {writing}; free space in the data directory, then {then}"


def what_was_written(exc: BaseException) -> str:
    text = str(exc).lower()
    if "checkpoint" in text:
        return "a checkpoint"
    if "onnx" in text:
        return "the ONNX export"
    return "the trained model's files"
