"""The GPU memory estimate of a Hugging Face job for the job form (`models_zoo.hf.memory`, fed
with the model's config.json: a registered / uploaded folder, or the Hub cache's copy) and the
largest GPU a registered worker has."""

from __future__ import annotations

import json
import math
from pathlib import Path

from models_zoo.hf import TASKS, local_name, with_fine_tune_defaults
from models_zoo.hf import memory
from webapp.cluster.models import Worker


def _folder(user, model: str) -> Path | None:
    """Where the model's config.json is on this server, or None (a Hub id not in the cache)."""
    if local_name(model) is not None:
        from webapp.hub.services import local_path

        path = local_path(user, model)
        return Path(path) if path else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
    except Exception:  # noqa: BLE001 - a malformed id, an unreadable cache: no estimate
        return None
    return Path(found).parent if isinstance(found, str) else None


def largest_gpu() -> tuple[int, str]:
    """(bytes, name) of the largest GPU among the registered workers; (0, "") without one."""
    best = (0, "")
    for gpus in Worker.objects.values_list("gpus", flat=True):
        for g in gpus or []:
            size = int(g.get("memory_total") or 0)
            if size > best[0]:
                best = (size, str(g.get("name") or "GPU"))
    return best


def _seq_len(task: str, model_config: dict, config: dict) -> int:
    if task == "causal_lm":
        return int(model_config.get("block_size") or 128)
    if task == "text_classification":
        return int(model_config.get("max_length") or 128)
    patch = int(config.get("patch_size") or 16)
    return (int(config.get("image_size") or 224) // patch) ** 2 + 1


def _flag(value) -> bool:
    return value in (True, "true", "on", "1", "True")


def job_estimate(user, architecture: str, model_config: dict, train_config: dict) -> dict:
    """{"available": False, "why"} or the estimate, its words, the largest GPU, whether it fits,
    a warning when no registered GPU fits, and the whole GB to fill in as the job's minimum."""
    task = TASKS.get(architecture)
    if task is None:
        return {"available": False, "why": "estimates are for Hugging Face fine-tuning"}
    model = str(model_config.get("model") or "").strip()
    folder = _folder(user, model) if model else None
    if folder is None or not (folder / "config.json").is_file():
        return {"available": False, "why": f"no config.json of {model or 'the model'} on this server "
                                           "(a Hub model is estimated once it is in the cache)"}
    try:
        config = json.loads((folder / "config.json").read_text())
        tc = with_fine_tune_defaults(train_config, model_config)
        method = str(model_config.get("method") or "full")
        if _flag(model_config.get("freeze_encoder")) and method == "full":
            method = "freeze_encoder"
        # Per GPU: a job on N devices puts batch_size / N rows on each (each holds a whole model).
        per_gpu = max(1, int(tc.get("batch_size") or 16) // max(1, int(tc.get("gpus") or 1)))
        est = memory.estimate(
            config, method=method, batch_size=per_gpu,
            seq_len=_seq_len(task, model_config, config),
            gradient_checkpointing=_flag(model_config.get("gradient_checkpointing")),
            lora_rank=int(model_config.get("lora_rank") or 8), task=task, params=memory.safetensors_params(folder))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return {"available": False, "why": f"the model's config.json cannot be read: {exc}"}
    size, name = largest_gpu()
    fits = None if not size else est.total <= size
    warning = ""
    if fits is False:
        warning = (f"This job needs about {est.total / memory.GB:.1f} GB of GPU memory, more than the largest GPU of "
                   f"any registered worker ({name}, {size / memory.GB:.0f} GB): no worker can run it. Use "
                   "lora / qlora, gradient checkpointing, a smaller batch or a shorter sequence.")
    return {"available": True, "estimate": est.to_dict(), "text": memory.describe(est),
            "largest_gpu": {"name": name, "bytes": size} if size else None, "fits": fits, "warning": warning,
            "min_gpu_memory_gb": max(1, math.ceil(est.total / memory.GB))}
