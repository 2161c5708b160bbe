"""The training loop: setup → data → model → optimizer → loop (step, eval, checkpoint, report).

No Django here. `run()` trains from a plain TrainSpec and tells its callbacks what happens.
"""

from __future__ import annotations

import json
import math
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


def make_optimizer(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    lr, wd = tc.learning_rate, tc.weight_decay
    if tc.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if tc.optimizer == "sgd_momentum":
        return torch.optim.SGD(params, lr=lr, momentum=tc.momentum, weight_decay=wd)
    if tc.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if tc.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if tc.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=tc.momentum, weight_decay=wd)
    raise ValueError(f"unknown optimizer {tc.optimizer!r}")


def _loss(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out.squeeze(-1), y)


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: TensorData, batch_size: int) -> tuple[dict, torch.Tensor]:
    """Validation metrics (one host sync at the end) and the raw outputs."""
    model.eval()
    outs = [model(data.X_val[i : i + batch_size]) for i in range(0, len(data.X_val), batch_size)]
    model.train()
    out = torch.cat(outs)
    y = data.y_val
    if data.task == "classification":
        k = out.shape[1]
        pred = out.argmax(1)
        confusion = torch.bincount(y * k + pred, minlength=k * k).reshape(k, k).cpu()
        tp = confusion.diag().double()
        precision = tp / confusion.sum(0).clamp(min=1)
        recall = tp / confusion.sum(1).clamp(min=1)
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        return {
            "loss": F.cross_entropy(out, y).item(),
            "accuracy": (tp.sum() / len(y)).item(),
            "precision": precision.mean().item(),
            "recall": recall.mean().item(),
            "f1": f1.mean().item(),
            "confusion": confusion.tolist(),
        }, out
    norm = data.info["target_normalization"]
    pred = out.squeeze(-1) * norm["std"] + norm["mean"]
    truth = y * norm["std"] + norm["mean"]
    mse = F.mse_loss(pred, truth)
    var = ((truth - truth.mean()) ** 2).mean().clamp(min=1e-12)
    return {
        "loss": F.mse_loss(out.squeeze(-1), y).item(),
        "mse": mse.item(),
        "mae": (pred - truth).abs().mean().item(),
        "r2": (1 - mse / var).item(),
    }, out


def _samples(data: TensorData, out: torch.Tensor, indices: list[int]) -> list[dict]:
    info = data.info
    rows = []
    out = out[indices].float().cpu()
    truth = data.y_val[indices].cpu()
    if data.task == "classification":
        probs = out.softmax(1)
        conf, pred = probs.max(1)
        classes = info["classes"]
        for j, i in enumerate(indices):
            rows.append({
                "item": f"validation row {i}",
                "prediction": classes[int(pred[j])],
                "confidence": round(float(conf[j]), 4),
                "truth": classes[int(truth[j])],
                "correct": bool(pred[j] == truth[j]),
            })
    else:
        norm = info["target_normalization"]
        for j, i in enumerate(indices):
            rows.append({
                "item": f"validation row {i}",
                "prediction": round(float(out[j, 0]) * norm["std"] + norm["mean"], 6),
                "truth": round(float(truth[j]) * norm["std"] + norm["mean"], 6),
            })
    return rows


def _primary(task: str) -> tuple[str, str]:
    """The metric that picks the best epoch, and whether higher is better."""
    return ("accuracy", "max") if task == "classification" else ("loss", "min")


def export_model(output_dir: Path, spec: TrainSpec, model: torch.nn.Module, info: dict,
                 tc: TrainConfig, metrics: dict) -> list[str]:
    """Write model.safetensors + config.json: enough to rebuild the model without the web app."""
    art = output_dir / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = art / ".model.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(art / "model.safetensors")
    dataset_keys = ("kind", "task", "input_shape", "num_outputs", "classes", "feature_names",
                    "label_column", "categorical", "normalization", "target_normalization")
    config = {
        "format": "trainyard-model/1",
        "architecture": spec.architecture,
        "model_config": spec.model_config,
        "train_config": to_json(tc),
        "dataset": {k: info[k] for k in dataset_keys if k in info},
        "input_shape": info["input_shape"],
        "class_names": info.get("classes"),
        "metrics": {k: v for k, v in metrics.items() if k != "confusion"},
        "torch_version": torch.__version__,
    }
    tmp = art / ".config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(art / "config.json")
    return ["config.json", "model.safetensors"]


def run(spec: TrainSpec, callbacks: list[Callback] = (), control: Control | None = None) -> TrainResult:
    control = control or Control()
    cbs = CallbackList(callbacks)
    tc: TrainConfig = validate(TrainConfig, spec.train_config)
    output_dir = Path(spec.output_dir)

    # Setup and data: the whole cache lives on the device as tensors, decoded once.
    device = pick_device(spec.device)
    torch.manual_seed(tc.seed)
    data = load_cache(spec.dataset_dir, device)
    task = data.task
    n_train = len(data.X_train)
    # A trailing batch of one sample is dropped: batch norm cannot train on it, and with a new
    # shuffle every epoch each sample still takes part.
    steps_per_epoch = max(1, n_train // tc.batch_size if n_train % tc.batch_size == 1 else
                          math.ceil(n_train / tc.batch_size))

    # Model and optimizer.
    model = models_zoo.build_model(spec.architecture, spec.model_config, data.info).to(device)
    optimizer = make_optimizer(model, tc)
    metric_name, mode = _primary(task)

    state = TrainState(epochs=tc.epochs, steps_per_epoch=steps_per_epoch,
                       total_steps=steps_per_epoch * tc.epochs, learning_rate=tc.learning_rate)
    checkpoints = Checkpointer(output_dir / "checkpoints")
    # Loaded on the CPU: the RNG states must be CPU ByteTensors (set_rng_state refuses CUDA ones);
    # load_state_dict copies the weights and optimizer state onto the parameters' device.
    ckpt = checkpoints.load_latest(map_location="cpu")
    resumed = ckpt is not None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng_cpu"])
        if device.type == "cuda" and "rng_cuda" in ckpt:
            torch.cuda.set_rng_state(ckpt["rng_cuda"], device)
        state.epoch, state.step = int(ckpt["epoch"]), int(ckpt["step"])
        state.best_metric = ckpt.get("best_metric")
        state.samples_seen = int(ckpt.get("samples_seen", 0))
    state.start_step = state.step
    start_samples = state.samples_seen

    gen = torch.Generator().manual_seed(tc.seed + 1)
    sample_idx = torch.randperm(len(data.X_val), generator=gen)[: spec.num_samples].tolist()

    cbs.fire("on_train_begin", state, control)
    if resumed:  # after on_train_begin, which is every callback's first hook
        cbs.fire("on_message", state, control, "info", f"resumed from the checkpoint after epoch {state.epoch}")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    cbs.fire("on_message", state, control, "info", f"training on {device} ({where}), {n_train} training samples, "
             f"{steps_per_epoch} steps per epoch")
    loop_started = time.perf_counter()
    status = "succeeded"
    metrics: dict = dict(state.val_metrics)
    model.train()
    for epoch in range(state.epoch, tc.epochs):
        # A per-epoch generator makes the shuffle order independent of where a resume happened.
        perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(tc.seed * 100_003 + epoch)).to(device)
        # Running sums stay on the device; they are read once per log interval, not per step.
        run_loss = torch.zeros((), device=device)
        run_correct = torch.zeros((), device=device, dtype=torch.long)
        run_n = 0
        last_log = time.monotonic()
        for i in range(steps_per_epoch):
            idx = perm[i * tc.batch_size : (i + 1) * tc.batch_size]
            xb, yb = data.X_train[idx], data.y_train[idx]
            out = model(xb)
            loss = _loss(task, out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            bs = len(idx)
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
        if run_n:
            cbs.fire("on_log", state, control, "train",
                     _train_values(task, run_loss, run_correct, run_n, state, last_log))

        # Evaluate, report, checkpoint.
        state.epoch = epoch + 1
        metrics, val_out = evaluate(model, data, max(tc.batch_size, 1024))
        state.val_metrics = metrics
        current = metrics[metric_name]
        if state.best_metric is None or (current > state.best_metric if mode == "max" else current < state.best_metric):
            state.best_metric = current
        cbs.fire("on_log", state, control, "val", {k: v for k, v in metrics.items() if k != "confusion"})
        cbs.fire("on_eval", state, control, metrics)
        cbs.fire("on_samples", state, control, _samples(data, val_out, sample_idx))
        ckpt_state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "epoch": state.epoch,
            "step": state.step,
            "samples_seen": state.samples_seen,
            "best_metric": state.best_metric,
        }
        if device.type == "cuda":
            ckpt_state["rng_cuda"] = torch.cuda.get_rng_state(device)
        checkpoints.save(ckpt_state, state.epoch)
        cbs.fire("on_epoch_end", state, control)
        if control.should_stop:
            status = "cancelled"
            break

    if device.type == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - loop_started
    trained = state.samples_seen - start_samples
    artifacts: list[str] = []
    if status == "succeeded":
        if not metrics:  # resumed after the last epoch had already finished
            metrics, _ = evaluate(model, data, max(tc.batch_size, 1024))
        metrics = {**metrics, "samples_per_s": trained / train_seconds if train_seconds > 0 else 0.0,
                   "train_seconds": train_seconds}
        artifacts = export_model(output_dir, spec, model, data.info, tc, metrics)
    cbs.fire("on_train_end", state, control, status)
    return TrainResult(status=status, metrics=metrics, artifacts=artifacts, epochs_completed=state.epoch)


def _train_values(task: str, run_loss: torch.Tensor, run_correct: torch.Tensor, n: int,
                  state: TrainState, since: float) -> dict:
    # This is the one CPU–GPU sync point of the hot loop, once per log interval.
    values = {"loss": run_loss.item() / n}
    if task == "classification":
        values["accuracy"] = run_correct.item() / n
    values["lr"] = state.learning_rate
    values["samples_per_s"] = n / max(time.monotonic() - since, 1e-9)
    return values
