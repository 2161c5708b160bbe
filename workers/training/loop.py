"""The training loop, read top-down in `run()`: setup → resume → for each epoch: train one epoch,
evaluate, checkpoint, report → the test split, once, on the final model → export.

No Django here. `run()` trains from a plain TrainSpec and tells its callbacks what happens; its
own policies (keep the best epoch, early stopping) are callbacks too (workers/training/callbacks.py).
Metrics, the model card and the device choice are shared with the Hugging Face runtime
(workers/training/{metrics,artifacts,device}.py).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import models_zoo
from models_zoo.hparams import TrainConfig
from models_zoo.schema import to_json, validate
from workers.training.augment import Augmenter, plan_for
from workers.training.artifacts import (MODEL_CARD, make_dir, model_card, move_into_place, temp_path, thumbnail,
                                        write_atomic)
from workers.training.callbacks import Callback, CallbackList, Control, EarlyStopping, KeepBest, TrainState
from workers.training.checkpoint import Checkpointer
from workers.training.data import TensorData, load_cache
from workers.training.filecache import FileRows, Prefetch
from workers.training.device import describe, fit_cpu_threads, pick_device, tune_cpu
from workers.training.distributed import Dist
from workers.training.metrics import classification_metrics, collapse_warnings, perplexity, regression_metrics
from workers.training.spec import TrainResult, TrainSpec

# Importable from here as before (the Celery worker, benchmarks and tests use these names).
__all__ = ["classification_metrics", "evaluate", "fit_cpu_threads", "pick_device", "regression_metrics", "run",
           "tune_cpu"]


def make_optimizer(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    lr, wd = tc.learning_rate, tc.weight_decay
    if tc.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if tc.optimizer == "sgd_momentum":
        return torch.optim.SGD(params, lr=lr, momentum=tc.momentum, nesterov=tc.nesterov, weight_decay=wd)
    if tc.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if tc.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if tc.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=tc.momentum, weight_decay=wd)
    raise ValueError(f"unknown optimizer {tc.optimizer!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, tc: TrainConfig, steps_per_epoch: int):
    """A per-step schedule: constant, step decay, cosine or one-cycle, with optional linear warm-up.

    None for a constant rate without warm-up: nothing to do per step.
    """
    if tc.lr_schedule == "constant" and not tc.warmup_epochs:
        return None
    total = max(1, steps_per_epoch * tc.epochs)
    if tc.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=tc.learning_rate, total_steps=total)
    warm = int(tc.warmup_epochs * steps_per_epoch)
    period = tc.step_epochs * steps_per_epoch

    def factor(step: int) -> float:
        f = (step + 1) / warm if warm and step < warm else 1.0
        if tc.lr_schedule == "step":
            f *= tc.step_gamma ** (step // period)
        elif tc.lr_schedule == "cosine":
            progress = min(1.0, max(0, step - warm) / max(1, total - warm))
            f *= 0.5 * (1.0 + math.cos(math.pi * progress))
        return f

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Batches:
    """Shuffled mini-batches of a supervised dataset; the order depends only on (seed, epoch).

    Each batch is (inputs, targets, keyword arguments for the model): with `lengths`, the rows'
    lengths (text) as a CPU tensor, for recurrent models that pack by length.
    """

    # Under DDP (`dist`): every rank draws the same global order and takes its slice of each
    # global batch; `weight` scales the rank's mean loss so that DDP's gradient average is the
    # gradient of the global batch's mean (slices may differ in size by one row), and
    # `global_n` counts the rows of the whole batch.
    weight, global_n = 1.0, 0

    def __init__(self, data: TensorData, batch_size: int, seed: int, lengths: bool = False, dist: Dist | None = None):
        self.data, self.bs, self.seed, self.dist = data, batch_size, seed, dist
        self.lengths = lengths and data.lengths_train is not None
        n = data.n_train
        # A trailing batch of one sample is dropped: batch norm cannot train on it, and with a
        # new shuffle every epoch each sample still takes part. Under DDP so is one with fewer
        # rows than ranks (a rank would get none).
        tail = n % batch_size
        small = tail == 1 or (dist is not None and 0 < tail < dist.world)
        self.steps = max(1, n // batch_size if small else math.ceil(n / batch_size))

    def epoch(self, epoch: int):
        d = self.data
        order = torch.randperm(d.n_train, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        if isinstance(d.X_train, FileRows):  # on disk: rows gathered a few batches ahead by a thread
            for x, y, kwargs, shard in Prefetch(self._host_batches(order)):
                self.weight, self.global_n = shard  # set as the batch is handed out, not as it is read
                yield d.prepare(x), y.to(d.device, non_blocking=True), kwargs
            return
        # One copy per epoch; `order` stays alive (and on the host, for the lengths) meanwhile.
        perm = order.to(d.X_train.device, non_blocking=True)
        for i in range(self.steps):
            rows, self.weight, self.global_n = self._rows(i)
            idx = perm[rows]
            kwargs = {"lengths": d.lengths_train[order[rows]]} if self.lengths else {}
            yield d.prepare(d.X_train[idx]), d.y_train[idx].to(d.device, non_blocking=True), kwargs

    def _host_batches(self, order: torch.Tensor):
        """The same batches in the same order, read from the cache file (pinned for a GPU), each
        with its (weight, global_n)."""
        d = self.data
        for i in range(self.steps):
            rows, weight, global_n = self._rows(i)
            idx = order[rows]
            kwargs = {"lengths": d.lengths_train[idx]} if self.lengths else {}
            yield d.X_train[idx], d.y_train[idx], kwargs, (weight, global_n)

    def _rows(self, i: int) -> tuple[slice, float, int]:
        """Batch i's rows of the epoch's order for this rank, its loss weight and the global
        batch's row count (pure: the prefetch thread computes batches ahead)."""
        rows = slice(i * self.bs, (i + 1) * self.bs)
        if self.dist is None:
            return rows, 1.0, 0
        size = min(rows.stop, self.data.n_train) - rows.start
        mine = self.dist.shard(size)
        weight = (mine.stop - mine.start) * self.dist.world / size
        return slice(rows.start + mine.start, rows.start + mine.stop), weight, size


class StreamBatches:
    """Random windows of a token stream (language modelling): inputs and next-token targets."""

    weight, global_n = 1.0, 0

    def __init__(self, data: TensorData, batch_size: int, block: int, seed: int, dist: Dist | None = None):
        if data.n_train < block + 2:
            raise ValueError(f"the training text has {data.n_train} tokens; the block size needs at least {block + 2}")
        self.data, self.bs, self.block, self.seed, self.dist = data, batch_size, block, seed, dist
        if dist is not None:  # every rank draws the global batch's windows and takes its slice
            mine = dist.shard(batch_size)
            self.rows, self.global_n = mine, batch_size * block
            self.weight = (mine.stop - mine.start) * dist.world / batch_size
        self.steps = max(1, (data.n_train - 1) // (batch_size * block))
        self.offsets = torch.arange(block + 1, device=data.train_stream.device)

    def epoch(self, epoch: int):
        d = self.data
        stream = d.train_stream
        # The window starts are drawn where the stream lives, by a generator seeded from (seed,
        # epoch): no host-to-device copy (a stream sync on CUDA) per step. On the CPU these are
        # the same numbers as from a CPU generator; a resumed run redraws its epoch identically.
        g = torch.Generator(device=stream.device).manual_seed(self.seed * 100_003 + epoch)
        if isinstance(stream, FileRows):  # on disk: windows read a few batches ahead by a thread
            def host():
                for _ in range(self.steps):
                    starts = torch.randint(0, d.n_train - self.block - 1, (self.bs,), generator=g)
                    if self.dist is not None:
                        starts = starts[self.rows]
                    yield stream.windows(starts, self.block + 1)

            for window in Prefetch(host()):
                window = window.to(d.device, non_blocking=True)
                yield window[:, :-1], window[:, 1:], {}
            return
        for _ in range(self.steps):
            starts = torch.randint(0, d.n_train - self.block - 1, (self.bs,), generator=g, device=stream.device)
            if self.dist is not None:
                starts = starts[self.rows]
            window = stream[starts[:, None] + self.offsets].to(d.device, non_blocking=True)
            yield window[:, :-1], window[:, 1:], {}


def _loss(task: str, out: torch.Tensor, y: torch.Tensor, tc: TrainConfig) -> torch.Tensor:
    out = out.float()
    if task == "classification":
        return F.cross_entropy(out, y, label_smoothing=tc.label_smoothing)
    if task == "lm":
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    if tc.regression_loss == "mae":
        return F.l1_loss(out.squeeze(-1), y)
    return F.mse_loss(out.squeeze(-1), y)


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: TensorData, batch_size: int, block: int = 128,
             amp: bool = False, split: str = "val") -> tuple[dict, torch.Tensor | None]:
    """Metrics on the validation (or, `split="test"`, the test) rows — one host sync at the end
    — and the raw outputs."""
    model.eval()
    X = getattr(data, f"X_{split}")
    lengths = getattr(data, f"lengths_{split}") if getattr(model, "takes_lengths", False) else None
    with torch.autocast(device_type=data.device.type, dtype=torch.bfloat16, enabled=amp):
        if data.task == "lm":
            metrics = _evaluate_lm(model, data, batch_size, block)
            model.train()
            return metrics, None
        outs = [model(data.prepare(X[i : i + batch_size]),
                      **({} if lengths is None else {"lengths": lengths[i : i + batch_size]})).float()
                for i in range(0, len(X), batch_size)]
    model.train()
    out = torch.cat(outs)
    y = getattr(data, f"y_{split}").to(data.device)
    if data.task == "classification":
        return classification_metrics(out, y), out
    return regression_metrics(out, y, data.info["target_normalization"]), out


MAX_EVAL_WINDOWS = 512


def _evaluate_lm(model, data: TensorData, batch_size: int, block: int) -> dict:
    stream = data.val_stream
    if len(stream) < block + 2:
        raise ValueError(f"the validation text has {len(stream)} tokens; the block size needs at least {block + 2}")
    starts = torch.arange(0, max(1, len(stream) - block - 1), block, device=stream.device)[:MAX_EVAL_WINDOWS]
    offsets = torch.arange(block + 1, device=stream.device)
    total = torch.zeros((), device=data.device)
    for i in range(0, len(starts), batch_size):
        if isinstance(stream, FileRows):
            w = stream.windows(starts[i : i + batch_size], block + 1).to(data.device, non_blocking=True)
        else:
            w = stream[starts[i : i + batch_size, None] + offsets].to(data.device, non_blocking=True)
        out = model(w[:, :-1]).float()
        total += F.cross_entropy(out.reshape(-1, out.shape[-1]), w[:, 1:].reshape(-1), reduction="sum")
    loss = (total / (len(starts) * block)).item()
    return {"loss": loss, "perplexity": perplexity(loss)}


def _samples(data: TensorData, out: torch.Tensor | None, indices: list[int], model=None, block: int = 128,
             seed: int = 0) -> list[dict]:
    info = data.info
    if data.task == "lm":
        return _generated_samples(model, data, block, seed)
    rows = []
    out = out[indices].float().cpu()
    truth = data.y_val[indices].cpu()
    for j, i in enumerate(indices):
        row: dict = {"item": f"validation row {i}"}
        if data.kind == "image":
            row["item"] = f"validation image {i}"
            row["image"] = thumbnail(data.X_val[i])
        elif data.val_texts:
            row["item"] = data.val_texts[i][:160]
        rows.append(row)
    if data.task == "classification":
        conf, pred = out.softmax(1).max(1)
        classes = info["classes"]
        for j, row in enumerate(rows):
            row.update(prediction=classes[int(pred[j])], confidence=round(float(conf[j]), 4),
                       truth=classes[int(truth[j])], correct=bool(pred[j] == truth[j]))
    else:
        norm = info["target_normalization"]
        for j, row in enumerate(rows):
            row.update(prediction=round(float(out[j, 0]) * norm["std"] + norm["mean"], 6),
                       truth=round(float(truth[j]) * norm["std"] + norm["mean"], 6))
    return rows


def _generated_samples(model, data: TensorData, block: int, seed: int, n: int = 2, new_tokens: int = 160) -> list:
    if not hasattr(model, "generate"):
        return []
    stream = data.val_stream
    rows = []
    g = torch.Generator(device=data.device).manual_seed(seed)
    for k in range(n):
        start = (k * len(stream)) // n
        prompt = stream[start : start + min(32, block)].to(data.device)[None]
        model.eval()
        with torch.no_grad():
            out = model.generate(prompt, new_tokens, temperature=0.8, top_k=None, generator=g)
        model.train()
        rows.append({"item": f"sample {k + 1}", "prompt": data.decode(prompt[0].tolist()),
                     "generated": data.decode(out[0, prompt.shape[1]:].tolist())})
    return rows


DATASET_KEYS = ("kind", "task", "input_shape", "num_outputs", "classes", "feature_names", "label_column",
                "categorical", "normalization", "target_normalization", "vocab_size", "max_len", "level",
                "image_size", "channels", "tokenizer", "text_column", "missing")


def _plain(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "confusion"}


def export_model(output_dir: Path, spec: TrainSpec, model: torch.nn.Module, data: TensorData,
                 tc: TrainConfig, metrics: dict, test_metrics: dict | None = None) -> list[str]:
    """Write model.safetensors + config.json (+ vocab.json): enough to rebuild the model and
    prepare its inputs without the web app."""
    info = data.info
    art = output_dir / "artifacts"
    make_dir(art)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = temp_path(art / "model.safetensors")
    save_file(tensors, str(tmp))  # safetensors writes the file itself; moved into place (fenced) as below
    move_into_place(tmp, art / "model.safetensors")
    names = ["config.json", "model.safetensors"]
    config = {
        "format": "trainyard-model/1",
        "architecture": spec.architecture,
        "model_config": spec.model_config,
        "train_config": to_json(tc),
        "dataset": {k: info[k] for k in DATASET_KEYS if k in info},
        "input_shape": info["input_shape"],
        "class_names": info.get("classes"),
        "metrics": _plain(metrics),
        # The held-out test split, evaluated once on this model (never used to pick it).
        "test_metrics": _plain(test_metrics or {}),
        "torch_version": torch.__version__,
    }
    if data.vocab is not None:
        write_atomic(art / "vocab.json", json.dumps(data.vocab))
        names.append("vocab.json")
    write_atomic(art / "config.json", json.dumps(config, indent=2))
    write_atomic(art / MODEL_CARD, model_card(
        spec.architecture, spec, info, tc, metrics, versions=[f"torch {torch.__version__}", "format trainyard-model/1"],
        usage="Load with `models_zoo.loading.load_model(folder)` (config.json + model.safetensors).",
        test_metrics=_plain(test_metrics or {})))
    names.append(MODEL_CARD)
    return sorted(names)




# -- run ---------------------------------------------------------------------------------------------
@dataclass
class Setup:
    """The parts of one run, built once by `setup()` and shared by the steps of `run()`."""

    spec: TrainSpec
    tc: TrainConfig
    device: torch.device
    data: TensorData
    model: torch.nn.Module
    batches: Batches | StreamBatches
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    state: TrainState
    checkpoints: Checkpointer
    block: int
    use_amp: bool
    sample_idx: list[int]
    augmenter: Augmenter | None = None
    epoch_losses: list[torch.Tensor] = field(default_factory=list)  # this run's mean training loss per epoch
    # What the training steps call: the model, or its torch.compile'd wrapper (tc.compile). The
    # model itself is what is checkpointed, evaluated and exported.
    forward: Callable | None = None
    compile_note: str = ""
    # A multi-device job: this rank's place (None: one process, the path without collectives).
    # `train_module` is what training steps run (the model, or its DistributedDataParallel
    # wrapper); `live` the reporter's control, read only by rank 0 at each agreement.
    dist: Dist | None = None
    train_module: torch.nn.Module | None = None
    live: Control | None = None

    @property
    def is_main(self) -> bool:
        """The process that reports, checkpoints and exports (the only one without DDP)."""
        return self.dist is None or self.dist.is_main

    @property
    def eval_batch(self) -> int:
        # Evaluation keeps no activations for backward: bigger batches, except for language
        # models, whose logits are [batch, block, vocab].
        return self.tc.batch_size if self.data.task == "lm" else max(self.tc.batch_size, 1024)


def run(spec: TrainSpec, callbacks: list[Callback] = (), control: Control | None = None,
        dist: Dist | None = None) -> TrainResult:
    """Train `spec` to its end, or until a callback stops it (status "cancelled", nothing
    exported) or early stopping finishes it (exported like a completed run).

    With `dist`, this process is one rank of a data-parallel job (workers/training/distributed.py):
    `control` is rank 0's live one (its reporter's); the loop reads a control of its own, which
    every rank sets alike at each agreement. Ranks other than 0 export nothing."""
    control = control or Control()
    live = None
    if dist is not None:
        live, control = control, Control()
    s = setup(spec, validate(TrainConfig, spec.train_config), dist)
    s.live = live
    monitor, mode = s.tc.monitored(s.data.task)
    best = KeepBest(monitor, mode, s.model if s.tc.keep == "best" else None)
    early = EarlyStopping(monitor, mode, s.tc.early_stopping_patience)
    cbs = CallbackList([best, early, *callbacks])
    resumed = resume(s, [best, early])
    start_samples = s.state.samples_seen
    announce(s, cbs, control, resumed)

    started = time.perf_counter()
    stopped, metrics = train_epochs(s, cbs, control, best, early)
    s.checkpoints.wait()  # the last checkpoint is on disk (or its error raised) before the result
    if s.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    status = "cancelled" if stopped else "succeeded"
    if live is not None and stopped:
        live.request_stop(control.stop_reason)  # the caller reads why from its own control
    artifacts: list[str] = []
    test_metrics: dict = {}
    warnings: list[dict] = []
    if not s.is_main:
        return TrainResult(status=status, metrics=metrics, artifacts=[], epochs_completed=s.state.epoch)
    if status == "succeeded":
        metrics = final_metrics(s, cbs, control, best, metrics)
        test_metrics = evaluate_test(s, cbs, control)
        trained = s.state.samples_seen - start_samples
        metrics.update(samples_per_s=trained / seconds if seconds > 0 else 0.0, train_seconds=seconds)
        artifacts = export_model(Path(spec.output_dir), spec, s.model, s.data, s.tc, metrics, test_metrics)
        warnings = _collapse(s.data, metrics, torch.stack(s.epoch_losses).tolist() if s.epoch_losses else [])
        for w in warnings:
            cbs.fire("on_message", s.state, control, "warning", w["text"])
    cbs.fire("on_train_end", s.state, control, status)
    return TrainResult(status=status, metrics=metrics, artifacts=artifacts, epochs_completed=s.state.epoch,
                       test_metrics=test_metrics, warnings=warnings)


def _collapse(data: TensorData, metrics: dict, losses: list[float]) -> list[dict]:
    """The exported model's collapse flags (workers.training.metrics.collapse_warnings): its
    validation predictions all one class (read off the confusion matrix), a training loss whose
    epoch means never fell below the first epoch's (per-step losses are too noisy to judge)."""
    pred = truth = None
    if data.task == "classification" and metrics.get("confusion"):
        cm = torch.tensor(metrics["confusion"])
        pred = torch.repeat_interleave(torch.arange(cm.shape[1]), cm.sum(0)).tolist()
        truth = torch.repeat_interleave(torch.arange(cm.shape[0]), cm.sum(1)).tolist()
    return collapse_warnings(pred, data.info.get("classes"), truth, losses)


def train_epochs(s: Setup, cbs: CallbackList, control: Control, best: KeepBest,
                 early: EarlyStopping) -> tuple[bool, dict]:
    """Each remaining epoch: train, evaluate, checkpoint, report. Returns whether a stop cut the
    loop short (cancelled) and the last validation metrics."""
    metrics: dict = dict(s.state.val_metrics)
    # Cancelled only when a stop cut the loop short: one that arrives after the last epoch (while
    # the checkpoint is written) must not throw away a finished run.
    stopped = False
    for epoch in range(s.state.epoch, s.tc.epochs):
        train_tail = train_one_epoch(s, epoch, cbs, control)
        if stopped := control.should_stop:
            break
        metrics = evaluate_epoch(s, epoch, cbs, control, train_tail)
        if s.is_main:
            save_checkpoint(s, [best, early])  # written while the next epoch trains
        cbs.fire("on_epoch_end", s.state, control)
        if s.dist is not None:  # every rank ends (or goes on) after the same epoch
            s.dist.agree(s.live, control)
        if stopped := control.should_stop:
            break
        if control.finish:
            cbs.fire("on_message", s.state, control, "info", early.message)
            break
    return stopped, metrics


def setup(spec: TrainSpec, tc: TrainConfig, dist: Dist | None = None) -> Setup:
    """Device, data, model, batches, optimizer and schedule, as a fresh run starts them."""
    device = dist.device if dist is not None else pick_device(spec.device)
    tune_cpu()
    if dist is not None and device.type == "cpu":
        dist.share_cpu_threads()
    torch.manual_seed(tc.seed)
    # The cache is decoded once and kept as tensors (on the GPU when it fits).
    data = load_cache(spec.dataset_dir, device, spec.cache_memory_bytes)
    model = models_zoo.build_model(spec.architecture, spec.model_config, data.info).to(device)
    if device.type == "cuda" and data.kind == "image":
        model = model.to(memory_format=torch.channels_last)
        data.channels_last = True
    block = int(spec.model_config.get("block_size", 128))
    # Recurrent text models take the batch's lengths from the host copy the data layer keeps.
    batches = (StreamBatches(data, tc.batch_size, block, tc.seed, dist) if data.task == "lm" else
               Batches(data, tc.batch_size, tc.seed, lengths=getattr(model, "takes_lengths", False), dist=dist))
    optimizer = make_optimizer(model, tc)
    scheduler = make_scheduler(optimizer, tc, batches.steps)
    state = TrainState(epochs=tc.epochs, steps_per_epoch=batches.steps, total_steps=batches.steps * tc.epochs,
                       learning_rate=optimizer.param_groups[0]["lr"])
    n_val = len(data.val_stream) if data.task == "lm" else len(data.X_val)
    sample_idx = torch.randperm(n_val, generator=torch.Generator().manual_seed(tc.seed + 1))[: spec.num_samples]
    plan = plan_for(tc, data.info)
    # Each rank augments its own slice: its random draws are seeded apart from the others'.
    aug_seed = tc.seed + (1_000_003 * dist.rank if dist is not None else 0)
    augmenter = Augmenter(plan, aug_seed, device, data.channels_last) if plan.active else None
    train_module = model
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        sync_batchnorm(model, device)
        # Rank 0's initial weights are broadcast; gradients are averaged in buckets during backward.
        train_module = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return Setup(spec, tc, device, data, model, batches, optimizer, scheduler, state,
                 Checkpointer(Path(spec.output_dir) / "checkpoints"), block,
                 use_amp=device.type == "cuda" and tc.mixed_precision == "auto", sample_idx=sample_idx.tolist(),
                 augmenter=augmenter, forward=train_module, dist=dist, train_module=train_module)


def sync_batchnorm(model, device) -> bool:
    """On GPUs, a multi-device job's batch norm layers compute their batch statistics over the
    whole global batch (SyncBatchNorm: one all-reduce per layer per step), as one process would;
    the layers are swapped in place, with the same parameters and buffers, so checkpoints and
    exports are those of the plain model. torch has SyncBatchNorm for GPUs only: on the CPU (gloo)
    each rank normalises its own slice. True when layers were swapped."""
    from torch import nn

    if device.type != "cuda" or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return False
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model  # a network is never a bare BatchNorm layer: swapped in place
    return True


def resume(s: Setup, policies: list) -> bool:
    """Continue from the newest checkpoint, if any: weights, optimizer, schedule, RNG, progress
    and the policies' state. True when it resumed."""
    # Loaded on the CPU: the RNG states must be CPU ByteTensors (set_rng_state refuses CUDA ones);
    # load_state_dict copies the weights and optimizer state onto the parameters' device.
    ckpt = s.checkpoints.load_latest(map_location="cpu")
    state = s.state
    if ckpt is not None:
        s.model.load_state_dict(ckpt["model"])
        s.optimizer.load_state_dict(ckpt["optimizer"])
        if s.scheduler is not None and "scheduler" in ckpt:
            s.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng_cpu"])
        if s.device.type == "cuda" and "rng_cuda" in ckpt:
            torch.cuda.set_rng_state(ckpt["rng_cuda"], s.device)
        state.epoch, state.step = int(ckpt["epoch"]), int(ckpt["step"])
        state.best_metric = ckpt.get("best_metric")
        state.samples_seen = int(ckpt.get("samples_seen", 0))
        for policy in policies:
            policy.load_state_dict(ckpt, s.device)
        _configured_learning_rate(s)
        state.learning_rate = s.optimizer.param_groups[0]["lr"]
    state.start_step = state.step
    return ckpt is not None


def _configured_learning_rate(s: Setup) -> None:
    """The job's configured learning rate wins over the checkpoint's: the same value on a resume
    of the same job; a new one when the job continues another job's training with a new rate
    (webapp/jobs/services.py continue_job). The schedule goes on from the step it had reached."""
    lr = s.tc.learning_rate
    if isinstance(s.scheduler, torch.optim.lr_scheduler.LambdaLR):
        s.scheduler.base_lrs = [lr for _ in s.optimizer.param_groups]
        factor = s.scheduler.lr_lambdas[0](s.scheduler.last_epoch)
        for group in s.optimizer.param_groups:
            group["initial_lr"], group["lr"] = lr, lr * factor
    elif s.scheduler is None:
        for group in s.optimizer.param_groups:
            group["lr"] = lr


def announce(s: Setup, cbs: CallbackList, control: Control, resumed: bool) -> None:
    cbs.fire("on_train_begin", s.state, control)
    if resumed:  # after on_train_begin, which is every callback's first hook
        cbs.fire("on_message", s.state, control, "info", f"resumed from the checkpoint after epoch {s.state.epoch}")
    unit = "tokens" if s.data.task == "lm" else "samples"
    cbs.fire("on_message", s.state, control, "info",
             f"training on {s.device} ({describe(s.device)}), {s.data.n_train} training {unit}, "
             f"{s.batches.steps} steps per epoch" + (", bf16 autocast" if s.use_amp else ""))
    if s.data.file_backed:
        cbs.fire("on_message", s.state, control, "info",
                 f"the dataset cache ({s.data.cache_bytes / 2**20:,.1f} MiB) is larger than the memory this "
                 f"worker gives caches; its inputs are read from disk a few batches ahead")
    if s.dist is not None:
        backend = "NCCL" if s.device.type == "cuda" else "gloo"
        cbs.fire("on_message", s.state, control, "info",
                 f"data-parallel (DDP, {backend}) over {s.dist.world} ranks: each takes its slice of the "
                 f"global batch of {s.tc.batch_size}")
    if s.augmenter is not None:
        cbs.fire("on_message", s.state, control, "info",
                 f"augmenting training batches on {s.device.type}: {s.augmenter.plan.describe()}")


def train_one_epoch(s: Setup, epoch: int, cbs: CallbackList, control: Control) -> dict | None:
    """One pass over the shuffled training data, or until a callback stops the run. Returns the
    epoch's last train point, reported with the validation results (one burst of events)."""
    model, optimizer, scheduler, state, tc, task = s.model, s.optimizer, s.scheduler, s.state, s.tc, s.data.task
    params = [p for p in model.parameters() if p.requires_grad]
    last_step = s.batches.steps - 1
    # Running sums stay on the device; they are read once per log interval, not per step.
    run_loss = torch.zeros((), device=s.device)
    run_correct = torch.zeros((), device=s.device, dtype=torch.long)
    run_n = 0
    epoch_loss, epoch_n = torch.zeros((), device=s.device), 0
    last_log = time.monotonic()
    model.train()
    aug = s.augmenter
    if aug is not None:
        aug.start_epoch(epoch)
    for i, (xb, yb, kwargs) in enumerate(s.batches.epoch(epoch)):
        mix = None
        if aug is not None:
            xb, mix = aug(xb, yb)

        def forward_backward(forward):
            with torch.autocast(device_type=s.device.type, dtype=torch.bfloat16, enabled=s.use_amp):
                out = forward(xb, **kwargs)
            if mix is None:
                loss = _loss(task, out, yb, tc)
            else:  # mixup: the loss against both label sets, weighted like the inputs
                lam, perm = mix
                loss = lam * _loss(task, out, yb, tc) + (1.0 - lam) * _loss(task, out, yb[perm], tc)
            optimizer.zero_grad(set_to_none=True)
            if s.dist is None:
                loss.backward()
            else:  # DDP averages the ranks' gradients: weighted, that is the global batch's mean
                (loss * s.batches.weight).backward()
            return out, loss

        if tc.compile == "on" and state.step == state.start_step:
            out, loss = compiled_first_step(s, cbs, control, forward_backward)
        else:
            out, loss = forward_backward(s.forward)
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
            state.learning_rate = optimizer.param_groups[0]["lr"]

        bs = xb.numel() if task == "lm" else len(xb)  # language models count tokens
        run_loss += loss.detach() * bs
        epoch_loss += loss.detach() * bs
        epoch_n += bs
        if task == "classification":
            run_correct += (out.detach().argmax(1) == yb).sum()
        run_n += bs
        state.step += 1
        state.samples_seen += bs if s.dist is None else s.batches.global_n
        cbs.fire("on_step_end", state, control)
        if s.dist is None:
            if control.should_stop:
                return None
            log_now = time.monotonic() - last_log >= s.spec.log_interval and i < last_step
        else:  # rank 0 decides, every rank stops (or reports) at this same step
            log_now = s.dist.agree(s.live, control, time.monotonic() - last_log >= s.spec.log_interval
                                   and i < last_step)
            if control.should_stop:
                return None
        if log_now:
            run_n = _reduce(s, run_loss, run_correct, run_n)
            values = _train_values(task, run_loss, run_correct, run_n, state, last_log)
            cbs.fire("on_log", state, control, "train", values)
            run_loss.zero_(), run_correct.zero_()
            run_n, last_log = 0, time.monotonic()
    # Read now: the epoch's samples/s without the evaluation.
    run_n = _reduce(s, run_loss, run_correct, run_n)
    tail = _train_values(task, run_loss, run_correct, run_n, state, last_log) if run_n else None
    s.epoch_losses.append(epoch_loss / max(epoch_n, 1))  # stays on the device: read once, at the end
    return tail


def _reduce(s: Setup, run_loss: torch.Tensor, run_correct: torch.Tensor, run_n: int) -> int:
    """Under DDP, the running sums over every rank (in place) and the rows they cover."""
    if s.dist is None:
        return run_n
    n = torch.tensor(float(run_n), device=s.device)
    s.dist.all_sum(run_loss, run_correct, n)
    return int(n.item())


def compiled_first_step(s: Setup, cbs: CallbackList, control: Control, forward_backward) -> tuple:
    """The first step with torch.compile (tc.compile): compile, say how long it took, and on any
    failure say why and train on eagerly (the step is redone without compiling). A later
    recompile (e.g. the epoch's shorter last batch) that fails runs that frame eagerly
    (dynamo's suppress_errors)."""
    started = time.perf_counter()
    try:
        torch._dynamo.config.suppress_errors = True
        compiled = torch.compile(s.train_module)
        out, loss = forward_backward(compiled)
        if s.device.type == "cuda":
            torch.cuda.synchronize(s.device)
    except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager mode
        torch._dynamo.reset()
        s.forward = s.train_module
        why = (str(exc).strip().splitlines() or [""])[0][:200]
        s.compile_note = f"failed ({type(exc).__name__}), eager mode"
        cbs.fire("on_message", s.state, control, "warning",
                 f"torch.compile failed after {time.perf_counter() - started:.1f} s ({type(exc).__name__}: {why}); "
                 "training on in eager mode")
        return forward_backward(s.train_module)
    s.forward = compiled
    s.compile_note = f"compiled in {time.perf_counter() - started:.1f} s"
    cbs.fire("on_message", s.state, control, "info",
             f"torch.compile: the first step, compiling forward and backward, took {time.perf_counter() - started:.1f} s")
    return out, loss


def evaluate_epoch(s: Setup, epoch: int, cbs: CallbackList, control: Control, train_tail: dict | None) -> dict:
    """Validation after an epoch, reported with the epoch's last train point: metrics, the
    confusion matrix (on_eval) and samples."""
    s.state.epoch = epoch + 1
    metrics, val_out = evaluate(s.model, s.data, s.eval_batch, s.block, s.use_amp)
    if train_tail is not None:
        cbs.fire("on_log", s.state, control, "train", train_tail)
    s.state.val_metrics = metrics
    cbs.fire("on_log", s.state, control, "val", {k: v for k, v in metrics.items() if k != "confusion"})
    cbs.fire("on_eval", s.state, control, metrics)
    if s.is_main:  # only rank 0 reports
        cbs.fire("on_samples", s.state, control, _samples(s.data, val_out, s.sample_idx, s.model, s.block, s.tc.seed))
    return metrics


def save_checkpoint(s: Setup, policies: list) -> None:
    """Snapshot everything a restart needs and write it in the background."""
    state = s.state
    ckpt = {
        "model": s.model.state_dict(),
        "optimizer": s.optimizer.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "epoch": state.epoch,
        "step": state.step,
        "samples_seen": state.samples_seen,
        "best_metric": state.best_metric,
    }
    for policy in policies:
        ckpt.update(policy.state_dict())
    if s.scheduler is not None:
        ckpt["scheduler"] = s.scheduler.state_dict()
    if s.device.type == "cuda":
        ckpt["rng_cuda"] = torch.cuda.get_rng_state(s.device)
    s.checkpoints.save_async(ckpt, state.epoch)


def final_metrics(s: Setup, cbs: CallbackList, control: Control, best: KeepBest, metrics: dict) -> dict:
    """The metrics of the model that is exported: the best epoch's with keep=best (its weights
    loaded back), else the last epoch's."""
    if best.best_weights is not None:
        s.model.load_state_dict(best.best_weights)
        metrics = best.best_metrics
        cbs.fire("on_message", s.state, control, "info", f"exported the best epoch (validation {best.monitor} "
                 f"{s.state.best_metric:.4g})")
    if not metrics:  # resumed after the last epoch had already finished
        metrics, _ = evaluate(s.model, s.data, s.eval_batch, s.block, s.use_amp)
    return dict(metrics)


def evaluate_test(s: Setup, cbs: CallbackList, control: Control) -> dict:
    """The test split, when the dataset has one: evaluated once, after training, on the model that
    is exported (the best epoch's with keep=best). Reported as the "test" metric group through
    `on_log` only — never `on_eval`, so keep-best and early stopping never see it."""
    if not s.data.has_test:
        return {}
    metrics, _ = evaluate(s.model, s.data, s.eval_batch, s.block, s.use_amp, split="test")
    cbs.fire("on_log", s.state, control, "test", _plain(metrics))
    monitor, _ = s.tc.monitored(s.data.task)
    value = metrics.get(monitor)
    cbs.fire("on_message", s.state, control, "info", f"test split ({len(s.data.X_test)} rows), evaluated once on "
             f"the final model" + (f": {monitor} {value:.4g}" if isinstance(value, (int, float)) else ""))
    return dict(metrics)


def _train_values(task: str, run_loss: torch.Tensor, run_correct: torch.Tensor, n: int,
                  state: TrainState, since: float) -> dict:
    # This is the one CPU–GPU sync point of the hot loop, once per log interval.
    values = {"loss": run_loss.item() / n}
    if task == "classification":
        values["accuracy"] = run_correct.item() / n
    if task == "lm":
        values["perplexity"] = perplexity(values["loss"])
    values["lr"] = state.learning_rate
    values["samples_per_s"] = n / max(time.monotonic() - since, 1e-9)
    return values
