"""The training loop: setup → data → model → optimizer → loop (step, eval, checkpoint, report).

No Django here. `run()` trains from a plain TrainSpec and tells its callbacks what happens.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import models_zoo
from models_zoo.hparams import TrainConfig
from models_zoo.schema import to_json, validate
from workers.training.callbacks import Callback, CallbackList, Control, TrainState
from workers.training.checkpoint import Checkpointer
from workers.training.data import TensorData, load_cache
from workers.training.spec import TrainResult, TrainSpec


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fit_cpu_threads() -> int:
    """Use as many intra-op threads as CPUs this process may run on. torch counts the machine's
    cores; a worker pinned with taskset or a cgroup cpuset (one per GPU, a container) would
    otherwise run more threads than CPUs, and they spin-wait on each other. Returns the count."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return torch.get_num_threads()
    if 0 < allowed < torch.get_num_threads():
        torch.set_num_threads(allowed)
    return torch.get_num_threads()


def tune_cpu() -> None:
    """CPU settings for training: threads as above, and subnormal floats flushed to zero. As a
    model converges its gradients and Adam's moments shrink into the subnormal range, where x86
    arithmetic is many times slower: a 256-256 MLP here fell from 62k to 44k samples/s over 12
    epochs without this and stayed at 59-66k with it, at the same accuracy (bench/cpu_denormals.py).
    The values lost are below 1.2e-38 (float32), far under any gradient that moves a weight.

    Flush-to-zero is a setting of the calling thread, inherited only by threads started after
    it: torch's intra-op pool must not exist yet, or its threads keep the slow path (each
    worker pool process calls this at its start, workers/adapters/worker.py; the call in run() covers
    a fresh process)."""
    fit_cpu_threads()
    torch.set_flush_denormal(True)


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

    def __init__(self, data: TensorData, batch_size: int, seed: int, lengths: bool = False):
        self.data, self.bs, self.seed = data, batch_size, seed
        self.lengths = lengths and data.lengths_train is not None
        n = data.n_train
        # A trailing batch of one sample is dropped: batch norm cannot train on it, and with a
        # new shuffle every epoch each sample still takes part.
        self.steps = max(1, n // batch_size if n % batch_size == 1 else math.ceil(n / batch_size))

    def epoch(self, epoch: int):
        d = self.data
        order = torch.randperm(d.n_train, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        # One copy per epoch; `order` stays alive (and on the host, for the lengths) meanwhile.
        perm = order.to(d.X_train.device, non_blocking=True)
        for i in range(self.steps):
            rows = slice(i * self.bs, (i + 1) * self.bs)
            idx = perm[rows]
            kwargs = {"lengths": d.lengths_train[order[rows]]} if self.lengths else {}
            yield d.prepare(d.X_train[idx]), d.y_train[idx].to(d.device, non_blocking=True), kwargs


class StreamBatches:
    """Random windows of a token stream (language modelling): inputs and next-token targets."""

    def __init__(self, data: TensorData, batch_size: int, block: int, seed: int):
        if data.n_train < block + 2:
            raise ValueError(f"the training text has {data.n_train} tokens; the block size needs at least {block + 2}")
        self.data, self.bs, self.block, self.seed = data, batch_size, block, seed
        self.steps = max(1, (data.n_train - 1) // (batch_size * block))
        self.offsets = torch.arange(block + 1, device=data.train_stream.device)

    def epoch(self, epoch: int):
        d = self.data
        stream = d.train_stream
        # The window starts are drawn where the stream lives, by a generator seeded from (seed,
        # epoch): no host-to-device copy (a stream sync on CUDA) per step. On the CPU these are
        # the same numbers as from a CPU generator; a resumed run redraws its epoch identically.
        g = torch.Generator(device=stream.device).manual_seed(self.seed * 100_003 + epoch)
        for _ in range(self.steps):
            starts = torch.randint(0, d.n_train - self.block - 1, (self.bs,), generator=g, device=stream.device)
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
             amp: bool = False) -> tuple[dict, torch.Tensor | None]:
    """Validation metrics (one host sync at the end) and the raw outputs."""
    model.eval()
    lengths = data.lengths_val if getattr(model, "takes_lengths", False) else None
    with torch.autocast(device_type=data.device.type, dtype=torch.bfloat16, enabled=amp):
        if data.task == "lm":
            metrics = _evaluate_lm(model, data, batch_size, block)
            model.train()
            return metrics, None
        outs = [model(data.prepare(data.X_val[i : i + batch_size]),
                      **({} if lengths is None else {"lengths": lengths[i : i + batch_size]})).float()
                for i in range(0, len(data.X_val), batch_size)]
    model.train()
    out = torch.cat(outs)
    y = data.y_val.to(data.device)
    if data.task == "classification":
        return classification_metrics(out, y), out
    return regression_metrics(out, y, data.info["target_normalization"]), out


def classification_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict:
    """Loss, accuracy, macro precision / recall / F1 and the confusion matrix (rows: truth,
    columns: prediction) of logits [N, K] against class indices [N].

    As scikit-learn's `average="macro"` (zero_division=0): the mean over the classes that occur in
    the truth or the predictions; a class absent from both (a rare class missing from the
    validation split) neither counts as 0 nor lowers the mean.
    """
    k = logits.shape[1]
    pred = logits.argmax(1)
    confusion = torch.bincount(y * k + pred, minlength=k * k).reshape(k, k).cpu()
    tp = confusion.diag().double()
    predicted, true = confusion.sum(0), confusion.sum(1)
    precision = tp / predicted.clamp(min=1)
    recall = tp / true.clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    present = (predicted + true) > 0
    return {
        "loss": F.cross_entropy(logits, y).item(),
        "accuracy": (tp.sum() / len(y)).item(),
        "precision": precision[present].mean().item(),
        "recall": recall[present].mean().item(),
        "f1": f1[present].mean().item(),
        "confusion": confusion.tolist(),
    }


def regression_metrics(out: torch.Tensor, y: torch.Tensor, norm: dict) -> dict:
    """Loss (MSE on standardised targets), and MSE, MAE, R² in the target's own units."""
    pred = out.squeeze(-1) * norm["std"] + norm["mean"]
    truth = y * norm["std"] + norm["mean"]
    mse = F.mse_loss(pred, truth)
    var = ((truth - truth.mean()) ** 2).mean().clamp(min=1e-12)
    return {
        "loss": F.mse_loss(out.squeeze(-1), y).item(),
        "mse": mse.item(),
        "mae": (pred - truth).abs().mean().item(),
        "r2": (1 - mse / var).item(),
    }


MAX_EVAL_WINDOWS = 512


def _evaluate_lm(model, data: TensorData, batch_size: int, block: int) -> dict:
    stream = data.val_stream
    if len(stream) < block + 2:
        raise ValueError(f"the validation text has {len(stream)} tokens; the block size needs at least {block + 2}")
    starts = torch.arange(0, max(1, len(stream) - block - 1), block, device=stream.device)[:MAX_EVAL_WINDOWS]
    offsets = torch.arange(block + 1, device=stream.device)
    total = torch.zeros((), device=data.device)
    for i in range(0, len(starts), batch_size):
        w = stream[starts[i : i + batch_size, None] + offsets].to(data.device, non_blocking=True)
        out = model(w[:, :-1]).float()
        total += F.cross_entropy(out.reshape(-1, out.shape[-1]), w[:, 1:].reshape(-1), reduction="sum")
    loss = (total / (len(starts) * block)).item()
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}


def _thumbnail(image: torch.Tensor) -> str:
    """A uint8 CHW image as a small PNG data URI (sample gallery)."""
    import base64
    import io

    from PIL import Image

    arr = image.cpu().numpy()
    pil = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    if max(pil.size) < 48:
        scale = max(1, 48 // max(pil.size))
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


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
            row["image"] = _thumbnail(data.X_val[i])
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
                "image_size", "channels", "tokenizer", "text_column")


def export_model(output_dir: Path, spec: TrainSpec, model: torch.nn.Module, data: TensorData,
                 tc: TrainConfig, metrics: dict) -> list[str]:
    """Write model.safetensors + config.json (+ vocab.json): enough to rebuild the model and
    prepare its inputs without the web app."""
    info = data.info
    art = output_dir / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = art / ".model.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(art / "model.safetensors")
    names = ["config.json", "model.safetensors"]
    config = {
        "format": "trainyard-model/1",
        "architecture": spec.architecture,
        "model_config": spec.model_config,
        "train_config": to_json(tc),
        "dataset": {k: info[k] for k in DATASET_KEYS if k in info},
        "input_shape": info["input_shape"],
        "class_names": info.get("classes"),
        "metrics": {k: v for k, v in metrics.items() if k != "confusion"},
        "torch_version": torch.__version__,
    }
    if data.vocab is not None:
        tmp = art / ".vocab.json.tmp"
        tmp.write_text(json.dumps(data.vocab))
        tmp.replace(art / "vocab.json")
        names.append("vocab.json")
    tmp = art / ".config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(art / "config.json")
    tmp = art / ".MODEL_CARD.md.tmp"
    tmp.write_text(model_card(spec, info, tc, metrics))
    tmp.replace(art / "MODEL_CARD.md")
    names.append("MODEL_CARD.md")
    return sorted(names)


def model_card(spec: TrainSpec, info: dict, tc: TrainConfig, metrics: dict) -> str:
    """A short, human-readable record of what was trained on what, and how well it did."""
    import platform

    split = ("the archive's own train/ and val/ folders" if info.get("split") == "provided" else
             f"seeded random split, {info.get('val_fraction')} validation, seed {info.get('split_seed', 0)}")
    lines = [
        f"# Model card: {spec.architecture}",
        "",
        "## Data",
        *([f"- dataset: {spec.extra['dataset_name']}"] if spec.extra.get("dataset_name") else []),
        f"- kind: {info.get('kind')}, task: {info.get('task')}, input shape: {info.get('input_shape')}",
        f"- training / validation: {info.get('num_train', info.get('num_train_tokens'))} / "
        f"{info.get('num_val', info.get('num_val_tokens'))} ({split})",
    ]
    if info.get("classes"):
        lines.append(f"- classes ({len(info['classes'])}): {', '.join(map(str, info['classes'][:50]))}")
    lines += ["", "## Architecture", *(f"- {k}: {v}" for k, v in spec.model_config.items()),
              "", "## Training", *(f"- {k}: {v}" for k, v in to_json(tc).items()),
              "", "## Validation metrics",
              *(f"- {k}: {v:.6g}" for k, v in metrics.items() if isinstance(v, (int, float))),
              "", "## Versions",
              f"- torch {torch.__version__}, Python {platform.python_version()}, format trainyard-model/1",
              "", "Load with `models_zoo.load_model(folder)` (config.json + model.safetensors).", ""]
    return "\n".join(lines)


def _better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


def run(spec: TrainSpec, callbacks: list[Callback] = (), control: Control | None = None) -> TrainResult:
    control = control or Control()
    cbs = CallbackList(callbacks)
    tc: TrainConfig = validate(TrainConfig, spec.train_config)
    output_dir = Path(spec.output_dir)

    # Setup and data: the cache is decoded once and kept as tensors (on the GPU when it fits).
    device = pick_device(spec.device)
    tune_cpu()
    torch.manual_seed(tc.seed)
    data = load_cache(spec.dataset_dir, device)
    task = data.task
    block = int(spec.model_config.get("block_size", 128))
    use_amp = device.type == "cuda" and tc.mixed_precision == "auto"

    # Model, batches, optimizer, schedule.
    model = models_zoo.build_model(spec.architecture, spec.model_config, data.info).to(device)
    if device.type == "cuda" and data.kind == "image":
        model = model.to(memory_format=torch.channels_last)
        data.channels_last = True
    # Recurrent text models take the batch's lengths from the host copy the data layer keeps.
    batches = (StreamBatches(data, tc.batch_size, block, tc.seed) if task == "lm" else
               Batches(data, tc.batch_size, tc.seed, lengths=getattr(model, "takes_lengths", False)))
    steps_per_epoch = batches.steps
    optimizer = make_optimizer(model, tc)
    scheduler = make_scheduler(optimizer, tc, steps_per_epoch)
    monitor, mode = tc.monitored(task)

    state = TrainState(epochs=tc.epochs, steps_per_epoch=steps_per_epoch,
                       total_steps=steps_per_epoch * tc.epochs, learning_rate=optimizer.param_groups[0]["lr"])
    best_state: dict | None = None
    best_metrics: dict = {}
    bad_epochs = 0
    checkpoints = Checkpointer(output_dir / "checkpoints")
    # Loaded on the CPU: the RNG states must be CPU ByteTensors (set_rng_state refuses CUDA ones);
    # load_state_dict copies the weights and optimizer state onto the parameters' device.
    ckpt = checkpoints.load_latest(map_location="cpu")
    resumed = ckpt is not None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and "scheduler" in ckpt:
            scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng_cpu"])
        if device.type == "cuda" and "rng_cuda" in ckpt:
            torch.cuda.set_rng_state(ckpt["rng_cuda"], device)
        state.epoch, state.step = int(ckpt["epoch"]), int(ckpt["step"])
        state.best_metric = ckpt.get("best_metric")
        state.samples_seen = int(ckpt.get("samples_seen", 0))
        state.learning_rate = optimizer.param_groups[0]["lr"]
        bad_epochs = int(ckpt.get("bad_epochs", 0))
        best_metrics = dict(ckpt.get("best_metrics", {}))
        if "best_model" in ckpt:
            best_state = {k: v.to(device) for k, v in ckpt["best_model"].items()}
    state.start_step = state.step
    start_samples = state.samples_seen

    n_val = len(data.val_stream) if task == "lm" else len(data.X_val)
    gen = torch.Generator().manual_seed(tc.seed + 1)
    sample_idx = torch.randperm(n_val, generator=gen)[: spec.num_samples].tolist()

    cbs.fire("on_train_begin", state, control)
    if resumed:  # after on_train_begin, which is every callback's first hook
        cbs.fire("on_message", state, control, "info", f"resumed from the checkpoint after epoch {state.epoch}")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    cbs.fire("on_message", state, control, "info", f"training on {device} ({where}), {data.n_train} training "
             f"{'tokens' if task == 'lm' else 'samples'}, {steps_per_epoch} steps per epoch"
             + (", bf16 autocast" if use_amp else ""))
    loop_started = time.perf_counter()
    status = "succeeded"
    metrics: dict = dict(state.val_metrics)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    for epoch in range(state.epoch, tc.epochs):
        # Running sums stay on the device; they are read once per log interval, not per step.
        run_loss = torch.zeros((), device=device)
        run_correct = torch.zeros((), device=device, dtype=torch.long)
        run_n = 0
        last_log = time.monotonic()
        for i, (xb, yb, kwargs) in enumerate(batches.epoch(epoch)):
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = model(xb, **kwargs)
            loss = _loss(task, out, yb, tc)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
                state.learning_rate = optimizer.param_groups[0]["lr"]

            bs = xb.numel() if task == "lm" else len(xb)  # language models count tokens
            run_loss += loss.detach() * bs
            if task == "classification":
                run_correct += (out.detach().argmax(1) == yb).sum()
            run_n += bs
            state.step += 1
            state.samples_seen += bs
            cbs.fire("on_step_end", state, control)
            if control.should_stop:
                break
            if time.monotonic() - last_log >= spec.log_interval and i < steps_per_epoch - 1:
                cbs.fire("on_log", state, control, "train",
                         _train_values(task, run_loss, run_correct, run_n, state, last_log))
                run_loss.zero_(), run_correct.zero_()
                run_n, last_log = 0, time.monotonic()
        if control.should_stop:
            status = "cancelled"
            break
        # The epoch's last train point is read now (its samples/s without the evaluation) and
        # reported with the validation results: one burst of events per epoch, one write.
        train_tail = _train_values(task, run_loss, run_correct, run_n, state, last_log) if run_n else None

        # Evaluate, report, checkpoint.
        state.epoch = epoch + 1
        metrics, val_out = evaluate(model, data, max(tc.batch_size, 1024) if task != "lm" else tc.batch_size,
                                    block, use_amp)
        if train_tail is not None:
            cbs.fire("on_log", state, control, "train", train_tail)
        state.val_metrics = metrics
        if _better(metrics[monitor], state.best_metric, mode):
            state.best_metric, best_metrics, bad_epochs = metrics[monitor], metrics, 0
            if tc.keep == "best":
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        cbs.fire("on_log", state, control, "val", {k: v for k, v in metrics.items() if k != "confusion"})
        cbs.fire("on_eval", state, control, metrics)
        cbs.fire("on_samples", state, control, _samples(data, val_out, sample_idx, model, block, tc.seed))
        ckpt_state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "epoch": state.epoch,
            "step": state.step,
            "samples_seen": state.samples_seen,
            "best_metric": state.best_metric,
            "best_metrics": best_metrics,
            "bad_epochs": bad_epochs,
        }
        if scheduler is not None:
            ckpt_state["scheduler"] = scheduler.state_dict()
        if best_state is not None:
            ckpt_state["best_model"] = best_state
        if device.type == "cuda":
            ckpt_state["rng_cuda"] = torch.cuda.get_rng_state(device)
        checkpoints.save_async(ckpt_state, state.epoch)  # written while the next epoch trains
        cbs.fire("on_epoch_end", state, control)
        if control.should_stop:
            status = "cancelled"
            break
        if tc.early_stopping_patience and bad_epochs >= tc.early_stopping_patience and state.epoch < tc.epochs:
            cbs.fire("on_message", state, control, "info", f"early stopping: validation {monitor} has not improved "
                     f"for {bad_epochs} epochs (best {state.best_metric:.4g})")
            break

    checkpoints.wait()  # the last checkpoint is on disk (or its error raised) before the result
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - loop_started
    trained = state.samples_seen - start_samples
    artifacts: list[str] = []
    if status == "succeeded":
        if tc.keep == "best" and best_state is not None:
            model.load_state_dict(best_state)
            metrics = best_metrics
            cbs.fire("on_message", state, control, "info", f"exported the best epoch (validation {monitor} "
                     f"{state.best_metric:.4g})")
        if not metrics:  # resumed after the last epoch had already finished
            metrics, _ = evaluate(model, data, max(tc.batch_size, 1024) if task != "lm" else tc.batch_size, block,
                                  use_amp)
        metrics = {**metrics, "samples_per_s": trained / train_seconds if train_seconds > 0 else 0.0,
                   "train_seconds": train_seconds}
        artifacts = export_model(output_dir, spec, model, data, tc, metrics)
    cbs.fire("on_train_end", state, control, status)
    return TrainResult(status=status, metrics=metrics, artifacts=artifacts, epochs_completed=state.epoch)


def _train_values(task: str, run_loss: torch.Tensor, run_correct: torch.Tensor, n: int,
                  state: TrainState, since: float) -> dict:
    # This is the one CPU–GPU sync point of the hot loop, once per log interval.
    values = {"loss": run_loss.item() / n}
    if task == "classification":
        values["accuracy"] = run_correct.item() / n
    if task == "lm":
        values["perplexity"] = math.exp(min(values["loss"], 50.0))
    values["lr"] = state.learning_rate
    values["samples_per_s"] = n / max(time.monotonic() - since, 1e-9)
    return values
