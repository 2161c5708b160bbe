"""Hugging Face fine-tuning entries: pretrained transformers trained by `transformers.Trainer`.

Torch-free, like the rest of the registry: these modules hold the Config of each task (its
form), the checks run before a job is queued, and the names shared with the worker
(`workers.hf`), which does the loading and training. An HF architecture name starts with
"hf_".

Model source (the `model` setting): a Hugging Face Hub id ("org/name" or "name"; the worker
downloads it when the job starts, so it needs internet or a cached copy), or "local:<name>" for
a model the admin registered on the server or the user uploaded as a ZIP (webapp.hub).

Fine-tuning method (the `method` setting, shared by the three tasks): full (every weight),
freeze_encoder (the classification head only), lora (low-rank adapters on the linear layers,
PEFT; the head trains in full as `modules_to_save`), qlora (the same on a 4-bit NF4 base,
bitsandbytes, CUDA only). `fine_tune_defaults(method)` gives the training settings a job gets
when it does not set them (TrainConfig's defaults are for training from scratch).
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
# The try page's form for a fine-tuned model of each task, and the fields that form sends.
TRY_FORMS = {"text_classification": "text", "image_classification": "image", "causal_lm": "lm"}
TRY_FIELDS = {"text": ("text",), "image": (), "lm": ("prompt", "temperature", "top_k", "top_p", "max_new_tokens")}
SUPPORTED_OPTIMIZERS = ("adam", "adamw", "sgd", "sgd_momentum")
SUPPORTED_SCHEDULES = ("constant", "cosine")

MODEL_HELP = ("a Hugging Face Hub id such as org/name (downloaded when the job starts: the worker needs "
              "internet or a cached copy), or local:NAME for a model registered on this server or uploaded "
              "on the Models page")


METHODS = [("full", "Full fine-tuning"), ("freeze_encoder", "Freeze the encoder (train the head)"),
           ("lora", "LoRA (adapters, PEFT)"), ("qlora", "QLoRA (4-bit base + LoRA, CUDA only)")]
ADAPTER_METHODS = ("lora", "qlora")
QLORA_NEEDS_CUDA = ("4-bit QLoRA needs a CUDA GPU (bitsandbytes NF4 kernels); choose method = lora "
                    "to fine-tune adapters on CPU")
_TARGETS = re.compile(r"^[A-Za-z0-9_.]+(\s*,\s*[A-Za-z0-9_.]+)*$")

# Training settings an HF job gets unless it sets them: a pretrained transformer is fine-tuned
# for a few epochs at a small learning rate after a short warm-up; adapters take a learning
# rate about ten times higher than full fine-tuning (only the low-rank matrices and the head move).
WARMUP_RATIO = 0.06
_DEFAULT_LR = {"full": 2e-5, "freeze_encoder": 1e-3, "lora": 2e-4, "qlora": 2e-4}
DEFAULTS_RULE = ("unset training settings default to 3 epochs, batch size 16, AdamW, weight decay 0.01, "
                 "linear warm-up over the first 6% of the steps, and learning rate 2e-5 (full), "
                 "1e-3 (freeze_encoder: the head alone), 2e-4 (lora, qlora)")


def fine_tune_defaults(method: str, epochs: int | None = None) -> dict:
    """The TrainConfig values an HF job of `method` gets for the settings it leaves out.
    The warm-up is a ratio of the run (WARMUP_RATIO), stored as epochs (TrainConfig's unit)."""
    epochs = epochs or 3
    return {"epochs": 3, "batch_size": 16, "learning_rate": _DEFAULT_LR.get(method, 2e-5), "optimizer": "adamw",
            "weight_decay": 0.01, "warmup_epochs": round(WARMUP_RATIO * epochs, 4)}


def with_fine_tune_defaults(train_config: dict | None, model_config: dict | None) -> dict:
    """`train_config` with the method's defaults for the keys it does not have."""
    given = dict(train_config or {})
    method = str((model_config or {}).get("method") or "full")
    if (model_config or {}).get("freeze_encoder") in (True, "true", "on", "1") and method == "full":
        method = "freeze_encoder"
    try:
        epochs = int(given.get("epochs") or 3)
    except (TypeError, ValueError):
        epochs = 3
    defaults = fine_tune_defaults(method, epochs)
    return {**{k: v for k, v in defaults.items() if k not in given}, **given}


def upgrade(data: dict) -> dict:
    """Settings stored before `method` existed: freeze_encoder=true is method=freeze_encoder."""
    data = dict(data)
    if "freeze_encoder" in data:
        raw = data.pop("freeze_encoder")
        if raw in (True, "true", "on", "1", "True"):
            if data.get("method", "freeze_encoder") != "freeze_encoder":
                from models_zoo.schema import ConfigError

                raise ConfigError({"method": f"freeze_encoder=true contradicts method={data['method']}; "
                                             "set method alone"})
            data["method"] = "freeze_encoder"
    return data


def method_params() -> dict:
    """The fine-tuning fields every HF task's Config declares (fresh dataclass fields per call)."""
    from models_zoo.schema import param

    adapters = {"method": tuple(ADAPTER_METHODS)}
    return {
        "method": param("full", label="Fine-tuning method", choices=METHODS,
                        help="lora / qlora train small adapters (and the head): far less memory; qlora needs CUDA"),
        "lora_rank": param(8, label="LoRA rank (r)", min=1, max=1024, help="lora / qlora",
                           applies_when=adapters),
        "lora_alpha": param(16, label="LoRA alpha", min=1, max=4096, help="scale = alpha / rank", applies_when=adapters),
        "lora_dropout": param(0.05, label="LoRA dropout", min=0.0, max=0.9, applies_when=adapters),
        "lora_target_modules": param("all-linear", label="LoRA target modules", kind="str",
                                     help='"all-linear" (every linear layer but the output head) or names, '
                                          'e.g. "q_proj,v_proj"', applies_when=adapters),
        "merge_adapter": param(False, label="Also export the merged model",
                               help="lora: model.zip holds the adapter and, with this, the adapter merged into "
                                    "the base (a plain save_pretrained model)", applies_when=adapters),
        "gradient_checkpointing": param(False, label="Gradient checkpointing",
                                        help="recompute activations in the backward pass: less memory, ~30% slower"),
        "grad_accumulation": param(1, label="Gradient accumulation steps", min=1, max=1024,
                                   help="effective batch size = batch size × this"),
    }


def method_fields_errors(config) -> dict[str, str]:
    """The fine-tuning fields' cross-checks (each task's Config.check calls it)."""
    errors = {}
    targets = config.lora_target_modules.strip()
    if config.method in ADAPTER_METHODS and targets != "all-linear" and not _TARGETS.match(targets):
        errors["lora_target_modules"] = ('"all-linear", or module names separated by commas '
                                         '(e.g. "q_proj,v_proj" or "query,value")')
    if config.merge_adapter and config.method == "qlora":
        errors["merge_adapter"] = ("a 4-bit base cannot be merged exactly; download the adapter and merge it "
                                   "into the full-precision base model")
    return errors


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
    if (ranks := tc.gpus * tc.nodes) > 1 and tc.batch_size % ranks:
        # The Trainer gives every rank the same number of rows per step (the batch is global).
        over = f"{tc.gpus} devices" if ranks == tc.gpus else f"{ranks} ranks ({tc.gpus} × {tc.nodes} machines)"
        errors["batch_size"] = (f"Hugging Face fine-tuning splits the batch evenly over the {over}: "
                                f"give a multiple of {ranks}")
    return errors


def common_errors(config, info: dict, kinds: tuple[str, ...], label: str) -> dict[str, str]:
    from models_zoo._checks import kind_error

    errors = kind_error(info, kinds, label)
    if errors:
        return errors
    return source_error(config.model)


def build(config, info: dict):
    raise NotImplementedError("Hugging Face models are loaded and trained by workers.hf, not built by models_zoo")
