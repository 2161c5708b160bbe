"""Hugging Face fine-tuning: setup → model source → data → Trainer (with the bridge) → final
evaluation → save_pretrained ZIP. No Django here.

`run(spec, callbacks, control)` has the zoo loop's contract (workers.training.run): the same
callbacks see the same hooks (progress, train/val metrics, confusion, samples, messages), so the
reporter, the job page, cancel and resume work unchanged. `transformers.Trainer` does the
training itself (optimizer, schedule, bf16, checkpoints with optimizer and RNG state).

Resume: the Trainer checkpoints after every epoch (the last two are kept) into a folder private
to the run's attempt, `<output_dir>/hf-checkpoints/run-<owner token>/checkpoint-<step>`, so a run
that lost its job (paused past its lease while another run took over) never writes, rotates or
deletes the live run's checkpoints. The bridge marks a checkpoint complete (after flushing it to
disk) in `on_save`, and only under the run's fence (workers/training/artifacts.py): a fenced run's
checkpoint is never marked, and the run stops there (`Fenced`). Once a run has a complete
checkpoint of its own, the earlier attempts' folders are retired (renamed away under the fence,
then deleted), except the one holding the best checkpoint that keep=best will load. A restarted
run resumes from the newest complete checkpoint of any attempt and drops torn ones.

Several devices (TrainConfig.gpus > 1): every rank started by torchrun (workers/adapters/ddp.py,
ddp_rank.py) runs this with a `Dist`, and the Trainer does DDP itself (accelerate finds the
process group torchrun's environment set up). The job's batch_size stays the global batch: each
rank takes batch_size / ranks rows per step (so the same hyperparameters train the same way on one
device or several). Only rank 0 has callbacks (the reporter), makes folders, marks checkpoints
complete, retires old attempts and exports; every rank writes its own RNG state into the
checkpoint, and rank 0 marks it complete only after every rank's part is on disk (a barrier).
Rank 0 picks the checkpoint to resume and the attempt's folder and tells the others (a broadcast);
its stop decision (cancel, requeue) and its "report now" tick are broadcast at every step's end
(Dist.agree), so every rank stops at the same step and the Trainer's loss gather, a collective,
happens on all of them or none.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import models_zoo
from models_zoo.hf import ADAPTER_METHODS, QLORA_NEEDS_CUDA, TASKS, train_errors, with_fine_tune_defaults
from models_zoo.hparams import TrainConfig
from models_zoo.schema import validate
from workers.hf import data as hfdata
from workers.hf.source import PICKLE_SUFFIXES, ModelSourceError, fsync_tree, resolve
from workers.training.artifacts import (MODEL_CARD, Fenced, fence_tag, fenced_rename, make_dir, model_card,
                                        move_into_place, temp_path, thumbnail, val_predictions, write_atomic,
                                        write_val_predictions)
from workers.training.callbacks import Callback, CallbackList, Control, TrainState
from workers.training.device import describe, pick_device, tune_cpu
from workers.training.metrics import classification_metrics, collapse_warnings, perplexity
from workers.training.spec import TrainResult, TrainSpec

CHECKPOINTS = "hf-checkpoints"
COMPLETE = ".trainyard-complete"
MODEL_ZIP = "model.zip"
NUM_SAMPLES_LM = 2
NUM_SAMPLES_CHAT = 3
HIGH_LR = 1e-3
# Where the classification models of transformers keep their head (BERT, RoBERTa, ViT, ConvNeXt:
# classifier; GPT-2 and Llama as classifiers: score).
HEAD_NAMES = ("classifier", "score")


class HFJobError(ValueError):
    """A job that cannot run as configured; the message is for the user."""


# -- checkpoints ----------------------------------------------------------------------------------
def _step_of(path: Path) -> int:
    m = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(m.group(1)) if m else -1


def run_folder(ckpt_dir: Path) -> Path:
    """Where this attempt's Trainer checkpoints: private to its owner token."""
    tag = fence_tag()
    return ckpt_dir / (f"run-{tag}" if tag else "run")


def _checkpoints(ckpt_dir: Path) -> list[Path]:
    """Every attempt's checkpoint folders (and those of the layout before run folders)."""
    if not ckpt_dir.is_dir():
        return []
    folders = [ckpt_dir] + [p for p in ckpt_dir.iterdir() if p.is_dir() and p.name.startswith("run")]
    return [p for f in folders for p in f.iterdir() if p.is_dir() and _step_of(p) >= 0]


def _checkpoint_plan(ckpt_dir: Path, dist=None) -> tuple[Path, Path | None]:
    """(this attempt's checkpoint folder, the checkpoint to resume or None). Rank 0 makes the
    folders and picks (dropping torn checkpoints); the other ranks are told (a broadcast), so
    every rank resumes the same step and writes its part into the same folder."""
    plan = [None, None]
    if dist is None or dist.is_main:
        # Made here without parents (under a fence), not by the Trainer: a stale run of a deleted
        # job fails instead of making the job's folder again.
        make_dir(ckpt_dir)
        own = run_folder(ckpt_dir)
        make_dir(own)
        resume = latest_checkpoint(ckpt_dir)
        plan = [str(own), str(resume) if resume else None]
    if dist is not None:
        import torch.distributed as tdist

        tdist.broadcast_object_list(plan, src=0)
    return Path(plan[0]), Path(plan[1]) if plan[1] else None


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest complete checkpoint of any attempt; newer torn ones (a crash while saving) are
    removed."""
    found = sorted(_checkpoints(ckpt_dir), key=_step_of, reverse=True)
    for path in found:
        if (path / COMPLETE).is_file() and (path / "trainer_state.json").is_file():
            return path
        shutil.rmtree(path, ignore_errors=True)
    return None


def retire_other_runs(own: Path, best: str | None) -> None:
    """Earlier attempts' checkpoint folders, once this run has a complete checkpoint of its own:
    renamed away under the fence (a fenced run retires nothing), then deleted; the folder that
    holds `best` (keep=best loads it at the end) stays."""
    root = own.parent
    keep = Path(best).resolve() if best else None
    old = [p for p in root.iterdir() if p != own and not p.name.startswith(".")
           and ((p.is_dir() and p.name.startswith("run")) or _step_of(p) >= 0)]
    old = [p for p in old if keep is None or not (keep == p.resolve() or p.resolve() in keep.parents)]
    if not old:
        return
    moves = [(p, root / f".retired-{own.name}-{i}") for i, p in enumerate(old)]
    if fenced_rename(moves):
        for _, trash in moves:
            shutil.rmtree(trash, ignore_errors=True)


# -- metrics ----------------------------------------------------------------------------------------
class ClassificationMetrics:
    """compute_metrics for the Trainer, by the zoo loop's `classification_metrics` (the same
    macro averages); keeps the last confusion matrix and predictions aside (they are not
    scalars, and must not grow trainer_state.json). The loss is the Trainer's own eval_loss."""

    def __init__(self, num_classes: int):
        self.k = num_classes
        self.confusion: list | None = None
        self.pred: np.ndarray | None = None
        self.conf: np.ndarray | None = None

    def __call__(self, eval_pred) -> dict:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        logits = torch.as_tensor(np.asarray(logits), dtype=torch.float32)
        y = torch.as_tensor(np.asarray(eval_pred.label_ids), dtype=torch.long)
        conf, pred = logits.softmax(-1).max(-1)
        metrics = classification_metrics(logits, y, self.k)
        self.confusion, self.pred, self.conf = metrics.pop("confusion"), pred.numpy(), conf.numpy()
        del metrics["loss"]
        return metrics


def _strip(metrics: dict, prefix: str) -> dict:
    skip = ("runtime", "samples_per_second", "steps_per_second", "epoch")
    out = {}
    for k, v in metrics.items():
        if k.startswith(prefix) and isinstance(v, (int, float)) and not k.endswith(skip):
            out[k[len(prefix):]] = float(v)
    return out


def _with_perplexity(values: dict, task: str) -> dict:
    if task == "causal_lm" and "loss" in values:
        values["perplexity"] = perplexity(values["loss"])
    return values


def reported_metrics(trainer_metrics: dict, task: str) -> dict:
    """The Trainer's evaluation metrics ("eval_" keys: its loss and compute_metrics' values)
    as this runtime reports them, named and derived as the zoo loop's."""
    return _with_perplexity(_strip(trainer_metrics, "eval_"), task)


# -- the bridge -------------------------------------------------------------------------------------
def make_bridge(cbs: CallbackList, control: Control, state: TrainState, *, log_interval: float,
                samples_per_step: int, task: str, on_evaluated, message: str, dist=None):
    from transformers import TrainerCallback

    class Bridge(TrainerCallback):
        """transformers' TrainerCallback hooks → the runtime's Callback hooks."""

        def __init__(self):
            self.cancelled = False
            self.last_log = time.monotonic()
            self.last_log_samples = 0
            self.eval_seconds = 0.0
            self.eval_started = 0.0
            self.train_losses: list[float] = []  # this run's train points (the flat-loss warning)
            self.train_started = time.perf_counter()
            self.agreed = Control()  # with several ranks: what rank 0 decided, on every rank

        def on_train_begin(self, args, hf_state, hf_control, **kw):
            state.total_steps = int(hf_state.max_steps)
            state.steps_per_epoch = max(1, math.ceil(hf_state.max_steps / max(1, args.num_train_epochs)))
            state.step = state.start_step = int(hf_state.global_step)
            state.epoch = state.step // state.steps_per_epoch
            state.samples_seen = state.step * samples_per_step
            state.started_at = self.last_log = time.monotonic()
            self.last_log_samples = state.samples_seen
            cbs.fire("on_train_begin", state, control)
            if state.step:
                cbs.fire("on_message", state, control, "info",
                         f"resumed from the checkpoint after epoch {state.epoch} (step {state.step})")
            cbs.fire("on_message", state, control, "info", message)
            self.train_started = time.perf_counter()

        def on_step_end(self, args, hf_state, hf_control, **kw):
            state.step = int(hf_state.global_step)
            state.samples_seen += samples_per_step
            cbs.fire("on_step_end", state, control)
            log_due = time.monotonic() - self.last_log >= log_interval
            stop = control.should_stop
            if dist is not None:  # rank 0's decision, at the same step on every rank (a broadcast)
                log_due = dist.agree(control if dist.is_main else None, self.agreed, log_due)
                stop = self.agreed.should_stop
            if stop:
                self.cancelled = True
                hf_control.should_training_stop = True
            elif log_due:
                hf_control.should_log = True  # the Trainer averages the loss since its last log

        def on_log(self, args, hf_state, hf_control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs or any(k.startswith("eval_") for k in logs):
                return
            now = time.monotonic()
            values = {"loss": float(logs["loss"])}
            self.train_losses.append(values["loss"])
            if task == "causal_lm":
                values["perplexity"] = perplexity(values["loss"])
            lr = logs.get("learning_rate")
            values["lr"] = float(lr) if lr is not None else state.learning_rate
            state.learning_rate = values["lr"]
            # Throughput since the previous point (tokens/s for language models, like the zoo's).
            values["samples_per_s"] = (state.samples_seen - self.last_log_samples) / max(now - self.last_log, 1e-9)
            self.last_log, self.last_log_samples = now, state.samples_seen
            cbs.fire("on_log", state, control, "train", values)

        def on_epoch_end(self, args, hf_state, hf_control, **kw):
            state.epoch = int(round(hf_state.epoch or 0))
            if self.cancelled:  # stop now: no evaluation, no checkpoint of the cut epoch (the last one stays)
                hf_control.should_evaluate = hf_control.should_save = hf_control.should_log = False
            else:
                hf_control.should_log = True  # the epoch's last train points before its evaluation

        def on_prediction_step(self, args, hf_state, hf_control, **kw):
            if not self.eval_started:
                self.eval_started = time.perf_counter()

        def on_evaluate(self, args, hf_state, hf_control, metrics=None, **kw):
            if self.eval_started:
                self.eval_seconds += time.perf_counter() - self.eval_started
                self.eval_started = 0.0
            self.last_log = time.monotonic()  # the next throughput point leaves the evaluation out
            values = reported_metrics(metrics or {}, task)
            state.val_metrics = values
            cbs.fire("on_log", state, control, "val", values)
            extra, samples = on_evaluated(kw.get("model"))
            cbs.fire("on_eval", state, control, {**values, **extra})
            cbs.fire("on_samples", state, control, samples)

        def on_save(self, args, hf_state, hf_control, **kw):
            folder = Path(args.output_dir) / f"checkpoint-{hf_state.global_step}"
            if dist is not None:
                import torch.distributed as tdist

                tdist.barrier()  # every rank's RNG state is written before rank 0 marks the checkpoint
                if not dist.is_main:
                    return
            if folder.is_dir():
                fsync_tree(folder)
                # Under the fence: a run that lost its job raises Fenced here and stops, and its
                # private folder goes (nothing else reads it).
                try:
                    write_atomic(folder / COMPLETE, str(hf_state.global_step))
                except Fenced:
                    shutil.rmtree(args.output_dir, ignore_errors=True)
                    raise
                retire_other_runs(Path(args.output_dir), hf_state.best_model_checkpoint)
            self.last_log = time.monotonic()  # nor the checkpoint
            cbs.fire("on_epoch_end", state, control)

        def train_seconds(self) -> float:
            return max(1e-9, time.perf_counter() - self.train_started - self.eval_seconds)

    return Bridge()


# -- models -----------------------------------------------------------------------------------------
def _load(task: str, folder: Path, has_weights: bool, info: dict, quantized: dict | None = None):
    """(model, tokenizer or image processor). `quantized`: from_pretrained's arguments for a 4-bit
    base (QLoRA) instead of float32 weights."""
    import transformers as tf

    common = {"trust_remote_code": False}
    auto = {"text_classification": tf.AutoModelForSequenceClassification,
            "causal_lm": tf.AutoModelForCausalLM,
            "image_classification": tf.AutoModelForImageClassification}[task]
    try:
        if task == "image_classification":
            processor = tf.AutoImageProcessor.from_pretrained(str(folder), **common)
        else:
            processor = tf.AutoTokenizer.from_pretrained(str(folder), **common)
    except Exception as exc:  # noqa: BLE001 - missing or broken tokenizer/processor files
        what = "image processor (preprocessor_config.json)" if task == "image_classification" else "tokenizer"
        raise ModelSourceError(f"the model folder has no usable {what}: {type(exc).__name__}: {exc}") from None
    kwargs: dict = {}
    if task != "causal_lm":
        classes = [str(c) for c in info["classes"]]
        kwargs = {"num_labels": len(classes), "id2label": dict(enumerate(classes)),
                  "label2id": {c: i for i, c in enumerate(classes)}}
    try:
        if has_weights:
            # float32 master weights whatever the checkpoint's dtype (transformers loads a half-precision
            # file as half by default): mixed precision is the Trainer's autocast, not half weights.
            weights = quantized or {"dtype": torch.float32}
            model = auto.from_pretrained(str(folder), use_safetensors=True, ignore_mismatched_sizes=True,
                                         **weights, **kwargs, **common)
        else:
            config = tf.AutoConfig.from_pretrained(str(folder), **kwargs, **common)
            model = auto.from_config(config, **common)
    except ValueError as exc:  # e.g. a causal LM folder chosen for classification
        raise ModelSourceError(f"the model cannot be loaded for {task.replace('_', ' ')}: {exc}") from None
    return model, processor


def _quantization(task: str, device: torch.device) -> dict:
    """from_pretrained's arguments for QLoRA's 4-bit NF4 base, or HFJobError saying why this worker
    cannot run it (checked before anything is loaded)."""
    if device.type != "cuda":
        raise HFJobError(f"{QLORA_NEEDS_CUDA}; this worker trains on {device.type}")
    try:
        import bitsandbytes  # noqa: F401 - imported lazily: only CUDA workers need it
    except ImportError:
        raise HFJobError("4-bit QLoRA needs bitsandbytes on this worker (pip install bitsandbytes)") from None
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=compute,
                               # the head is trained in full (modules_to_save): never quantized
                               llm_int8_skip_modules=list(HEAD_NAMES) if task != "causal_lm" else None)
    return {"quantization_config": quant, "device_map": {"": device.index or 0}}


def _head_names(model) -> list[str]:
    return [n for n in HEAD_NAMES if isinstance(getattr(model, n, None), torch.nn.Module)]


def _add_adapters(model, task: str, cfg) -> tuple[object, int]:
    """The model wrapped by PEFT with LoRA adapters (on a 4-bit base for qlora), and the number of
    trainable parameters. A classifier's head trains in full (modules_to_save): it is new."""
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

    heads = _head_names(model) if task != "causal_lm" else []
    if task != "causal_lm" and not heads:
        raise HFJobError(f"LoRA: {type(model).__name__} has no classification head named "
                         f"{' or '.join(HEAD_NAMES)} to train beside the adapters")
    if cfg.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    targets = cfg.lora_target_modules.strip()
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    # "all-linear" leaves a language model's output layer out; the head of every classifier (and
    # the layers inside it, RoBERTa's) is left out here: it is trained in full, not adapted.
    excluded = [name for name, _ in model.named_modules() for h in heads if name == h or name.startswith(h + ".")]
    task_type = {"text_classification": TaskType.SEQ_CLS, "causal_lm": TaskType.CAUSAL_LM}.get(task)
    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, exclude_modules=excluded or None, modules_to_save=heads or None,
                      task_type=task_type, bias="none")
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:  # no module matched the target names
        raise HFJobError(f"LoRA target modules: {exc}") from None
    return model, sum(p.numel() for p in model.parameters() if p.requires_grad)


def _freeze_encoder(model) -> int:
    base = getattr(model, model.base_model_prefix, None)
    if base is None:
        raise HFJobError("this model has no separate encoder to freeze")
    for p in base.parameters():
        p.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _training_args(tc: TrainConfig, ckpt_dir: Path, device: torch.device, steps_per_epoch: int, task: str,
                   cfg=None, world: int = 1):
    from transformers import TrainingArguments

    monitor, mode = tc.monitored("lm" if task == "causal_lm" else "classification")
    warmup = int(round(tc.warmup_epochs * steps_per_epoch))
    schedule = "cosine" if tc.lr_schedule == "cosine" else ("constant_with_warmup" if warmup else "constant")
    bf16 = (device.type == "cuda" and tc.mixed_precision == "auto" and torch.cuda.is_bf16_supported())
    return TrainingArguments(
        output_dir=str(ckpt_dir), num_train_epochs=tc.epochs, per_device_train_batch_size=tc.batch_size // world,
        per_device_eval_batch_size=max(tc.batch_size, 32), learning_rate=tc.learning_rate,
        weight_decay=tc.weight_decay, warmup_steps=warmup, lr_scheduler_type=schedule,
        optim="sgd" if tc.optimizer.startswith("sgd") else "adamw_torch",
        optim_args=f"momentum={tc.momentum}" if tc.optimizer == "sgd_momentum" else None,
        max_grad_norm=tc.grad_clip, label_smoothing_factor=tc.label_smoothing if task != "causal_lm" else 0.0,
        eval_strategy="epoch", save_strategy="epoch", save_total_limit=2, logging_strategy="no",
        # The filter tests every step's loss for NaN/inf on the host: a CPU-GPU sync point per
        # step. Off, the loss stays on the device until a log, and a diverged run shows NaN (as
        # the zoo's loop does) instead of the average of the earlier losses.
        logging_nan_inf_filter=False,
        load_best_model_at_end=tc.keep == "best", metric_for_best_model=monitor, greater_is_better=mode == "max",
        seed=tc.seed, data_seed=tc.seed, report_to="none", disable_tqdm=True, use_cpu=device.type == "cpu",
        bf16=bf16, dataloader_num_workers=0, remove_unused_columns=False,
        ddp_find_unused_parameters=False if world > 1 else None,
        prediction_loss_only=task == "causal_lm", log_level="warning",
        # Explicit: a PEFT-wrapped model's forward(*args, **kwargs) does not name its labels.
        label_names=["labels"],
        gradient_accumulation_steps=getattr(cfg, "grad_accumulation", 1),
        **_checkpointing(bool(getattr(cfg, "gradient_checkpointing", False))),
    ), bf16


def _checkpointing(on: bool) -> dict:
    """TrainingArguments for gradient checkpointing, by the name this transformers knows (newer 5.x
    releases call it activation checkpointing and warn on the old name). Non-reentrant: works with
    frozen embeddings (LoRA) without enable_input_require_grads."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    name = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {name: on, f"{name}_kwargs": {"use_reentrant": False}}


# -- samples ----------------------------------------------------------------------------------------
def _classification_samples(metrics: ClassificationMetrics, indices: list[int], classes: list[str], items,
                            y_val: np.ndarray, image: bool) -> list[dict]:
    if metrics.pred is None:
        return []
    rows = []
    for i in indices:
        pred = int(metrics.pred[i])
        row = {"item": str(items[i])[:160] if not image else f"validation image {i}",
               "prediction": classes[pred], "confidence": round(float(metrics.conf[i]), 4),
               "truth": classes[int(y_val[i])], "correct": pred == int(y_val[i])}
        if image:
            row["image"] = thumbnail(items[i])
        rows.append(row)
    return rows


def _generate(model, tokenizer, cfg, val_text: str, seed: int, device: torch.device) -> list[dict]:
    prompt = cfg.prompt or val_text[:100]
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    if ids.shape[1] == 0:
        ids = torch.tensor([[tokenizer.bos_token_id or tokenizer.eos_token_id or 0]])
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if limit:
        ids = ids[:, -max(1, limit - cfg.max_new_tokens):]
    was_training = model.training
    model.eval()
    rows = []
    # A private RNG stream: generating must not change the training's random state (resume).
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        with torch.no_grad():
            for k in range(NUM_SAMPLES_LM):
                out = model.generate(
                    ids.to(model.device), attention_mask=torch.ones_like(ids).to(model.device),
                    max_new_tokens=cfg.max_new_tokens, do_sample=cfg.temperature > 0,
                    temperature=cfg.temperature if cfg.temperature > 0 else None, top_k=None, top_p=None,
                    pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                    else tokenizer.eos_token_id)
                rows.append({"item": f"sample {k + 1}", "prompt": prompt,
                             "generated": tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)})
    if was_training:
        model.train()
    return rows


def _chat_samples(model, tokenizer, cfg, prompts: list[dict], seed: int, device: torch.device) -> list[dict]:
    """Answers to the first held-out prompts (their conversation up to its first reply), in the
    chat template the model trains with."""
    was_training = model.training
    model.eval()
    rows = []
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        with torch.no_grad():
            for k, p in enumerate(prompts[:NUM_SAMPLES_CHAT]):
                text = tokenizer.apply_chat_template(p["messages"], tokenize=False, add_generation_prompt=True)
                ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
                if limit:
                    ids = ids[:, -max(1, limit - cfg.max_new_tokens):]
                out = model.generate(
                    ids.to(model.device), attention_mask=torch.ones_like(ids).to(model.device),
                    max_new_tokens=cfg.max_new_tokens, do_sample=cfg.temperature > 0,
                    temperature=cfg.temperature if cfg.temperature > 0 else None, top_k=None, top_p=None,
                    pad_token_id=pad)
                rows.append({"item": f"held-out prompt {k + 1}",
                             "prompt": f"User: {p['messages'][-1]['content'][:500]}\nAssistant: ",
                             "generated": tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True),
                             "reference": p["reference"][:500]})
    if was_training:
        model.train()
    return rows


# -- export -----------------------------------------------------------------------------------------
def export(output_dir: Path, trainer, processor, spec: TrainSpec, tc: TrainConfig, info: dict, metrics: dict,
           predictions: list[dict] | None, test_metrics: dict | None = None) -> list[str]:
    """model.zip, MODEL_CARD.md and, for classifiers, val_predictions.json (what the final
    evaluation predicted). model.zip holds `model/`, a save_pretrained folder (safetensors, config,
    tokenizer/processor); for LoRA jobs `adapter/` (PEFT's adapter and the trained head, for
    PeftModel.from_pretrained on the base) and `model/` only with merge_adapter (the adapter
    merged into the base: a plain model again)."""
    import transformers

    art = output_dir / "artifacts"
    make_dir(art)
    folder = temp_path(output_dir / "export")  # private to this attempt: a stale run never shares it
    shutil.rmtree(folder, ignore_errors=True)
    model = trainer.model
    base, method = spec.model_config.get("model"), spec.model_config.get("method", "full")
    adapter = hasattr(model, "peft_config")
    parts = []
    if adapter:
        trainer.save_model(str(folder / "adapter"))  # adapter_model.safetensors + adapter_config.json
        # The adapter names its base as the job did (the Hub id, local:NAME), not the server's folder.
        config_file = folder / "adapter" / "adapter_config.json"
        config_file.write_text(json.dumps({**json.loads(config_file.read_text()),
                                           "base_model_name_or_path": base}, indent=2))
        parts.append("adapter")
        if spec.model_config.get("merge_adapter"):
            merged = copy.deepcopy(model).merge_and_unload()  # a copy: the trained model stays as it is
            merged.save_pretrained(str(folder / "model"))
            del merged
            parts.append("model")
    else:
        trainer.save_model(str(folder / "model"))  # safetensors (save_pretrained)
        parts.append("model")
    if adapter:
        usage = (f"Unzip. `adapter/` is a PEFT {method.upper()} adapter of the base model {base} (the "
                 "classification head, trained in full, is in it): load the base with `from_pretrained` "
                 "(AutoModelFor...), then `peft.PeftModel.from_pretrained(base, 'adapter')`"
                 + ("; `model/` is the adapter merged into the base (`merge_and_unload`), a plain "
                    "`from_pretrained` folder" if "model" in parts else "")
                 + ". Weights are safetensors; the tokenizer / image processor is in each folder.")
    else:
        usage = ("Unzip, then load the `model/` folder with `from_pretrained` (AutoModelFor... and "
                 "AutoTokenizer / AutoImageProcessor); weights are safetensors.")
    card = model_card(
        f"{spec.architecture} from {base}, method {method}", spec, info, tc, metrics,
        versions=[f"transformers {transformers.__version__}", f"torch {torch.__version__}"]
        + ([f"peft {_peft_version()}"] if adapter else []),
        usage=usage, test_metrics={k: v for k, v in (test_metrics or {}).items() if k != "confusion"})
    for part in parts:
        processor.save_pretrained(str(folder / part))
        (folder / part / "README.md").write_text(card)
    tmp = temp_path(art / MODEL_ZIP)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(folder.rglob("*")):
                # training_args.bin is a pickle the Trainer writes beside the model: not part of it.
                if p.is_file() and not p.name.lower().endswith(PICKLE_SUFFIXES):
                    zf.write(p, p.relative_to(folder).as_posix())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    move_into_place(tmp, art / MODEL_ZIP)  # under the fence: a fenced run's model is discarded
    write_atomic(art / MODEL_CARD, card)
    names = [MODEL_ZIP, MODEL_CARD]
    if predictions is not None:
        names.append(write_val_predictions(art, predictions))
    return sorted(names)


def _peft_version() -> str:
    import peft

    return peft.__version__


# -- run --------------------------------------------------------------------------------------------
@dataclass
class Datasets:
    """What the Trainer and the samples need of one task's data."""

    train: object
    val: object
    collator: object
    val_items: list | np.ndarray = ()  # per validation row: its text or image (classification)
    y_val: np.ndarray | None = None
    val_text: str = ""  # causal LM: the validation text, for the generation prompt
    test: object | None = None  # the test split, evaluated once after training (texts, images)
    val_prompts: list = ()  # chat: held-out conversations up to their first reply, for the samples
    notes: list = ()  # (level, text) for the log


def run(spec: TrainSpec, callbacks: list[Callback] = (), control: Control | None = None,
        dist=None) -> TrainResult:
    """Fine-tune `spec` with transformers' Trainer; the zoo loop's contract (see the module).
    `dist` (workers.training.distributed.Dist): this process is one rank of several."""
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback

    control = control or Control()
    cbs = CallbackList(callbacks)
    task, cfg, tc, info = _validated(spec)
    world, main = (dist.world, dist.is_main) if dist is not None else (1, True)
    cbs = cbs if main else CallbackList([])  # only rank 0 reports
    device = dist.device if dist is not None else pick_device(spec.device)
    quantized = _quantization(task, device) if cfg.method == "qlora" else None  # before anything loads
    _quiet_setup()
    if dist is not None:
        dist.share_cpu_threads()
    torch.manual_seed(tc.seed)

    # Model source: a registered/uploaded folder or a Hub snapshot, checked before loading.
    folder, label, has_weights = resolve(cfg.model, spec.extra.get("model_path"))
    if quantized and not has_weights:
        raise HFJobError(f"QLoRA quantizes pretrained weights, and {label} has none (a config only); "
                         "choose method = lora or full")
    model, processor = _load(task, folder, has_weights, info, quantized)
    data = _datasets(task, Path(spec.dataset_dir), info, model, processor, cfg)
    n_params = sum(p.numel() for p in model.parameters())
    trainable = None
    if cfg.method == "freeze_encoder":
        trainable = _freeze_encoder(model)
    elif cfg.method in ADAPTER_METHODS:
        model, trainable = _add_adapters(model, task, cfg)
    notes = _notes(label, has_weights, trainable, tc, cfg, n_params) + list(data.notes)

    classes = [str(c) for c in info.get("classes") or []]
    metrics_fn = ClassificationMetrics(len(classes)) if task != "causal_lm" else None
    steps_per_epoch = math.ceil(math.ceil(len(data.train) / tc.batch_size) / cfg.grad_accumulation)
    ckpt_dir = Path(spec.output_dir) / CHECKPOINTS
    own, resume = _checkpoint_plan(ckpt_dir, dist)
    args, bf16 = _training_args(tc, own, device, steps_per_epoch, task, cfg, world)
    sample_idx = (torch.randperm(len(data.val), generator=torch.Generator().manual_seed(tc.seed + 1))
                  [: spec.num_samples].tolist())
    state = TrainState(epochs=tc.epochs, steps_per_epoch=steps_per_epoch, total_steps=steps_per_epoch * tc.epochs,
                       learning_rate=tc.learning_rate)

    def on_evaluated(m):
        if task == "causal_lm" and data.val_prompts:
            return {}, _chat_samples(m or model, processor, cfg, data.val_prompts, tc.seed + state.epoch, device)
        if task == "causal_lm":
            return {}, _generate(m or model, processor, cfg, data.val_text, tc.seed + state.epoch, device)
        extra = {"confusion": metrics_fn.confusion} if metrics_fn.confusion is not None else {}
        return extra, _classification_samples(metrics_fn, sample_idx, classes, data.val_items, data.y_val,
                                              task == "image_classification")

    unit = ("conversations" if data.val_prompts else "blocks") if task == "causal_lm" else "samples"
    message = (f"fine-tuning {label} ({type(model).__name__}, {n_params / 1e6:.2f} M parameters) on "
               f"{_where(device, dist, tc.batch_size)}, "
               f"{len(data.train)} training {unit}, {steps_per_epoch} steps per epoch"
               + (", bf16" if bf16 else "") + (", 4-bit NF4 base" if quantized else ""))
    blocks = task == "causal_lm" and not data.val_prompts  # tokens per second; conversations per second
    samples_per_step = tc.batch_size * cfg.grad_accumulation * (cfg.block_size if blocks else 1)
    bridge = make_bridge(cbs, control, state, log_interval=spec.log_interval, samples_per_step=samples_per_step,
                         task=task, on_evaluated=on_evaluated, message=message, dist=dist)
    trainer = Trainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.val,
                      data_collator=data.collator, compute_metrics=metrics_fn, callbacks=[bridge],
                      processing_class=processor)
    trainer.remove_callback(PrinterCallback)  # the bridge reports; no log dicts printed into the job log
    for level, note in notes:
        cbs.fire("on_message", state, control, level, note)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    status = "cancelled" if bridge.cancelled else "succeeded"
    metrics: dict = {}
    test_metrics: dict = {}
    artifacts: list[str] = []
    warnings: list[dict] = []
    if status == "succeeded":
        trained = (state.step - state.start_step) * samples_per_step
        metrics, test_metrics, artifacts, val_pred = _finish(spec, tc, info, trainer, processor, data, task,
                                                             metrics_fn, classes, trained, bridge.train_seconds(),
                                                             main)
        warnings = collapse_warnings(val_pred, classes, data.y_val, bridge.train_losses)
        for w in warnings:  # in the log too, besides the job's flag
            cbs.fire("on_message", state, control, "warning", w["text"])
        if test_metrics:  # a group of its own, like the zoo loop's: never on_eval (the policies)
            cbs.fire("on_log", state, control, "test", test_metrics)
            cbs.fire("on_message", state, control, "info", f"test split ({len(data.test)} rows), evaluated once "
                     f"on the final model")
        saved = ("the adapter (adapter/" + (", and merged into the base: model/" if cfg.merge_adapter else "")
                 + ")" if cfg.method in ADAPTER_METHODS else "the fine-tuned model (save_pretrained folder)")
        cbs.fire("on_message", state, control, "info", f"saved {saved}, safetensors, as model.zip")
    cbs.fire("on_train_end", state, control, status)
    return TrainResult(status=status, metrics=metrics, artifacts=artifacts, epochs_completed=state.epoch,
                       test_metrics=test_metrics, warnings=warnings)


def _where(device: torch.device, dist, batch_size: int) -> str:
    if dist is None:
        return f"{device} ({describe(device)})"
    backend = "nccl" if device.type == "cuda" else "gloo"
    return f"{dist.world} ranks (DDP, {backend}; {batch_size // dist.world} of the batch's {batch_size} rows per rank)"


def _validated(spec: TrainSpec):
    """(task, model config, TrainConfig, dataset info), or HFJobError saying what does not fit."""
    task = TASKS.get(spec.architecture)
    if task is None:
        raise HFJobError(f"{spec.architecture!r} is not a Hugging Face architecture")
    cfg = models_zoo.get(spec.architecture).validate(spec.model_config)
    # The fine-tuning defaults for what the spec leaves out (a job stores every value it was given).
    tc: TrainConfig = validate(TrainConfig, with_fine_tune_defaults(spec.train_config, {"method": cfg.method}))
    errors = train_errors(tc)
    if errors:
        raise HFJobError("; ".join(f"{k}: {v}" for k, v in errors.items()))
    info = hfdata.load_info(Path(spec.dataset_dir))
    problems = models_zoo.check_for_dataset(spec.architecture, cfg, info)
    if problems:
        raise HFJobError("; ".join(problems.values()))
    return task, cfg, tc, info


def _notes(label: str, has_weights: bool, trainable: int | None, tc: TrainConfig, cfg,
           n_params: int) -> list[tuple[str, str]]:
    """(level, text) of what the user should know before the run starts."""
    notes = []
    if not has_weights:
        notes.append(("info", f"{label} has a config but no weights: it starts from a random initialisation"))
    if cfg.method == "freeze_encoder":
        notes.append(("info", f"encoder frozen: training {trainable:,} parameters (the head)"))
    elif cfg.method in ADAPTER_METHODS:
        base = "a 4-bit NF4 base" if cfg.method == "qlora" else "a frozen base"
        notes.append(("info", f"{cfg.method.upper()} (rank {cfg.lora_rank}, alpha {cfg.lora_alpha}, targets "
                              f"{cfg.lora_target_modules}) on {base}: training {trainable:,} of {n_params:,} "
                              f"parameters ({100 * trainable / max(1, n_params):.2f}%)"))
    if cfg.grad_accumulation > 1:
        notes.append(("info", f"effective batch size {tc.batch_size * cfg.grad_accumulation} (batch size "
                              f"{tc.batch_size} × {cfg.grad_accumulation} accumulation steps)"))
    # The head alone (freeze_encoder) takes a higher rate; everything else moves pretrained weights.
    if tc.learning_rate >= HIGH_LR and cfg.method != "freeze_encoder":
        usual = "1e-4 to 3e-4" if cfg.method in ADAPTER_METHODS else "2e-5 to 1e-4"
        notes.append(("warning", f"learning rate {tc.learning_rate:g} is high for fine-tuning a pretrained "
                                 f"transformer ({usual} is usual for {cfg.method})"))
    return notes


def _quiet_setup() -> None:
    """CPU settings as the zoo loop's; progress goes to the job page, not into its log."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    tune_cpu()  # threads per allowed CPU, subnormals flushed (workers/training/device.py)
    hf_logging.set_verbosity_warning()
    hf_logging.disable_progress_bar()
    disable_progress_bars()


def _datasets(task: str, dataset_dir: Path, info: dict, model, processor, cfg) -> Datasets:
    from transformers import DataCollatorWithPadding, default_data_collator

    if task == "text_classification":
        if processor.pad_token is None:  # decoder models used as classifiers (GPT-2) have none
            processor.pad_token = processor.eos_token or processor.unk_token
            model.config.pad_token_id = processor.pad_token_id
        train_ds, val_ds, val_items = hfdata.text_classification(dataset_dir, info, processor, cfg.max_length)
        return Datasets(train_ds, val_ds, DataCollatorWithPadding(processor), val_items,
                        np.load(dataset_dir / "y_val.npy", allow_pickle=False),
                        test=hfdata.text_test_split(dataset_dir, processor, cfg.max_length))
    if task == "causal_lm":
        if processor.pad_token is None:
            processor.pad_token = processor.eos_token or processor.unk_token
        limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        if limit and cfg.block_size > limit:
            raise HFJobError(f"block size {cfg.block_size} is longer than the model's context ({limit} tokens)")
        if info.get("kind") == "chat":
            return _chat_datasets(dataset_dir, processor, cfg)
        train_ds, val_ds, val_text = hfdata.causal_lm(dataset_dir, info, processor, cfg.block_size)
        return Datasets(train_ds, val_ds, default_data_collator, val_text=val_text)
    train_ds, val_ds = hfdata.image_classification(dataset_dir, info)
    collator = hfdata.ImageCollator(processor, int(getattr(model.config, "num_channels", 3)))
    return Datasets(train_ds, val_ds, collator, val_ds.X, val_ds.y, test=hfdata.image_test_split(dataset_dir))


def _chat_datasets(dataset_dir: Path, tokenizer, cfg) -> Datasets:
    own = hfdata.ensure_chat_template(tokenizer)
    train_ds, val_ds, prompts, dropped = hfdata.chat(dataset_dir, tokenizer, cfg.block_size)
    notes = [("info", "conversations formatted with the tokenizer's chat template; the loss is on the assistant's "
                      "replies only" if own else
              "the tokenizer has no chat template: conversations use the plain \"### User:\" / \"### Assistant:\" "
              "template (saved with the model's tokenizer); the loss is on the assistant's replies only")]
    if dropped:
        notes.append(("warning", f"{dropped} conversation(s) left out: no assistant reply within the first "
                                 f"{cfg.block_size} tokens (the block size)"))
    return Datasets(train_ds, val_ds, hfdata.ChatCollator(tokenizer.pad_token_id), val_prompts=prompts, notes=notes)


def _finish(spec: TrainSpec, tc: TrainConfig, info: dict, trainer, processor, data: Datasets, task: str,
            metrics_fn: ClassificationMetrics | None, classes: list[str], trained: int,
            seconds: float, main: bool = True) -> tuple[dict, dict, list[str], np.ndarray | None]:
    """The final evaluation of the model that is exported (the best epoch's with keep=best), the
    test split's (once, on that model, when there is one), then the export; (metrics, test
    metrics, artifact names, the validation predictions)."""
    output = trainer.predict(data.val, metric_key_prefix="eval")
    metrics = reported_metrics(output.metrics, task)
    metrics.update(samples_per_s=trained / seconds if trained else 0.0, train_seconds=seconds)
    predictions, val_pred = None, None
    if metrics_fn is not None and metrics_fn.pred is not None:
        val_pred = metrics_fn.pred.copy()
        predictions = val_predictions(metrics_fn.pred, metrics_fn.conf, classes)
    test_metrics: dict = {}
    if data.test is not None:  # after the validation predictions were read: metrics_fn keeps the last ones
        test_metrics = _with_perplexity(_strip(trainer.predict(data.test, metric_key_prefix="test").metrics,
                                               "test_"), task)
    if not main:  # the evaluations above are collectives (every rank's part); the export is rank 0's
        return metrics, test_metrics, [], val_pred
    output_dir = Path(spec.output_dir)
    artifacts = export(output_dir, trainer, processor, spec, tc, info, metrics, predictions, test_metrics)
    # Trainer checkpoints hold the optimizer state too (three times the model): a finished
    # job resumes nothing, so they go (a re-run after a crash here starts over, correctly).
    shutil.rmtree(output_dir / CHECKPOINTS, ignore_errors=True)
    return metrics, test_metrics, artifacts, val_pred


__all__ = ["HFJobError", "ModelSourceError", "run"]
