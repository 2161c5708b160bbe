"""Hugging Face fine-tuning entries: pretrained transformers trained by `transformers.Trainer`.

Torch-free, like the rest of the registry: these modules hold the Config of each task (its
form), the checks run before a job is queued, and the names shared with the worker
(`workers.hf`), which does the loading and training. An HF architecture name starts with
"hf_".

Model source (the `model` setting): a Hugging Face Hub id ("org/name" or "name"; the worker
downloads it when the job starts, so it needs internet or a cached copy), or "local:<name>" for
a model the admin registered on the server or the user uploaded as a ZIP (webapp.hub).
"""

from __future__ import annotations

import re

PREFIX = "hf_"
LOCAL_PREFIX = "local:"
# What the Hub accepts as a repo id: optional namespace, then a name; no "..", no leading
# punctuation, at most 96 characters per part.
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_LOCAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

# Architecture name -> the worker's task and the LocalModel task it needs.
TASKS = {
    "hf_text_classification": "text_classification",
    "hf_causal_lm": "causal_lm",
    "hf_image_classification": "image_classification",
}
TASK_LABELS = {
    "text_classification": "Text classification",
    "causal_lm": "Causal language model",
    "image_classification": "Image classification",
}
SUPPORTED_OPTIMIZERS = ("adam", "adamw", "sgd", "sgd_momentum")
SUPPORTED_SCHEDULES = ("constant", "cosine")

MODEL_HELP = ("a Hugging Face Hub id such as org/name (downloaded when the job starts: the worker needs "
              "internet or a cached copy), or local:NAME for a model registered on this server or uploaded "
              "on the Models page")


def is_hf(name: str) -> bool:
    return name.startswith(PREFIX)


def local_name(model: str) -> str | None:
    """The registered model's name for "local:<name>", else None (a Hub id)."""
    return model[len(LOCAL_PREFIX):] if model.startswith(LOCAL_PREFIX) else None


def source_error(model: str) -> dict[str, str]:
    """{"model": message} when `model` is neither a well-formed Hub id nor local:<name>."""
    model = model.strip()
    if not model:
        return {"model": "choose a model: a Hub id (org/name) or local:NAME"}
    name = local_name(model)
    if name is not None:
        if not _LOCAL_NAME.match(name):
            return {"model": "local model names are letters, digits, '.', '_' and '-'"}
        return {}
    if ".." in model or not _HUB_ID.match(model):
        return {"model": f"{model!r} is not a Hugging Face Hub id (org/name) nor local:NAME"}
    return {}


def train_errors(tc) -> dict[str, str]:
    """Training settings the Trainer-based jobs do not honour, as field -> message (torch-free)."""
    errors = {}
    if tc.optimizer not in SUPPORTED_OPTIMIZERS:
        errors["optimizer"] = "Hugging Face fine-tuning supports Adam, AdamW, SGD and SGD + momentum"
    if tc.nesterov:
        errors["nesterov"] = "not available for Hugging Face fine-tuning"
    if tc.lr_schedule not in SUPPORTED_SCHEDULES:
        errors["lr_schedule"] = "Hugging Face fine-tuning supports constant and cosine (both with the warm-up)"
    if tc.early_stopping_patience:
        errors["early_stopping_patience"] = "not available for Hugging Face fine-tuning; use Final model = best epoch"
    if tc.monitor in ("r2", "mae"):
        errors["monitor"] = "Hugging Face fine-tuning reports loss, accuracy and F1"
    if tc.augment not in ("auto", "off") or tc.crop_padding or tc.cutout or tc.mixup_alpha:
        errors["augment" if tc.augment not in ("auto", "off") else
               next(n for n in ("crop_padding", "cutout", "mixup_alpha") if getattr(tc, n))] = (
            "augmentation is for the zoo's image models, not Hugging Face fine-tuning")
    if tc.compile != "off":
        errors["compile"] = "not available for Hugging Face fine-tuning"
    return errors


def common_errors(config, info: dict, kinds: tuple[str, ...], label: str) -> dict[str, str]:
    from models_zoo._checks import kind_error

    errors = kind_error(info, kinds, label)
    if errors:
        return errors
    return source_error(config.model)


def build(config, info: dict):
    raise NotImplementedError("Hugging Face models are loaded and trained by workers.hf, not built by models_zoo")
