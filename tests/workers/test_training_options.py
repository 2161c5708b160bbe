"""Schedules, clipping, label smoothing, MAE, early stopping and best-model export."""

from __future__ import annotations

import json
import math

import numpy as np

import pytest
import torch

import models_zoo
import models_zoo.loading
from workers.datasets.tabular import ingest_csv

from models_zoo.hparams import TrainConfig
from models_zoo.schema import ConfigError, validate
from workers.training import Callback, TrainSpec, run
from workers.training.loop import make_scheduler


class LRs(Callback):
    def __init__(self):
        self.lrs = []
        self.messages = []

    def on_step_end(self, state, control):
        self.lrs.append(state.learning_rate)

    def on_message(self, state, control, level, text):
        self.messages.append(text)


def spec(ds, out, **train):
    return TrainSpec("mlp", {"hidden_sizes": [16]}, {"epochs": 4, "batch_size": 32, "learning_rate": 0.01, **train},
                     str(ds), str(out), device="cpu", log_interval=1e9)


def lr_curve(schedule: str, **kw) -> list[float]:
    tc = validate(TrainConfig, {"learning_rate": 1.0, "epochs": 10, "lr_schedule": schedule, **kw})
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, tc, steps_per_epoch=10)
    out = []
    for _ in range(100):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    return out


def test_schedules_have_their_shape():
    assert set(lr_curve("constant")) == {1.0}
    step = lr_curve("step", step_epochs=3, step_gamma=0.5)
    assert step[0] == 1.0 and step[30] == 0.5 and step[60] == 0.25
    cos = lr_curve("cosine")
    assert cos[0] == 1.0 and cos[50] == pytest.approx(0.5, abs=0.02) and cos[-1] < 0.01
    warm = lr_curve("cosine", warmup_epochs=2)
    assert warm[0] == pytest.approx(0.05) and warm[19] == pytest.approx(1.0) and warm[-1] < 0.01
    one = lr_curve("onecycle")
    peak = max(range(100), key=lambda i: one[i])
    assert one[0] < 0.1 and one[peak] == pytest.approx(1.0, abs=0.01) and 20 <= peak <= 40 and one[-1] < 0.01


def test_onecycle_with_warmup_is_rejected():
    with pytest.raises(ConfigError) as exc:
        validate(TrainConfig, {"lr_schedule": "onecycle", "warmup_epochs": 1})
    assert "warmup_epochs" in exc.value.errors


def test_monitor_must_exist_for_the_task():
    tc = validate(TrainConfig, {"monitor": "r2"})
    assert "monitor" in tc.check_for_task("classification") and tc.check_for_task("regression") == {}
    assert tc.monitored("regression") == ("r2", "max")
    assert validate(TrainConfig, {}).monitored("lm") == ("loss", "min")


@pytest.mark.parametrize("schedule", ["step", "cosine", "onecycle"])
def test_scheduled_training_resumes_with_its_schedule(cls_ds, tmp_path, schedule):
    full = LRs()
    run(spec(cls_ds, tmp_path / "full", lr_schedule=schedule, step_epochs=1, step_gamma=0.5), [full])

    class Stop(Callback):
        def on_epoch_end(self, state, control):
            control.should_stop = state.epoch == 2

    run(spec(cls_ds, tmp_path / "res", lr_schedule=schedule, step_epochs=1, step_gamma=0.5), [Stop()])
    rest = LRs()
    run(spec(cls_ds, tmp_path / "res", lr_schedule=schedule, step_epochs=1, step_gamma=0.5), [rest])
    assert rest.lrs == pytest.approx(full.lrs[len(full.lrs) - len(rest.lrs):])
    assert len(set(round(x, 8) for x in full.lrs)) > 1


def test_clipping_label_smoothing_nesterov_and_mae_train(cls_ds, reg_ds, tmp_path):
    r = run(spec(cls_ds, tmp_path / "a", grad_clip=0.5, label_smoothing=0.1, optimizer="sgd_momentum",
                 nesterov=True, learning_rate=0.1))
    assert r.status == "succeeded" and r.metrics["accuracy"] > 0.9
    r = run(spec(reg_ds, tmp_path / "b", regression_loss="mae", epochs=10))
    assert math.isfinite(r.metrics["mae"]) and r.metrics["r2"] > 0.8


# -- each option does what it says: one step on the whole training split, against a reference ----


class TrainLogs(Callback):
    def __init__(self):
        self.train = []

    def on_log(self, state, control, split, values):
        if split == "train":
            self.train.append(values)


@pytest.fixture
def initial_model(monkeypatch):
    """The model the run starts from, as it was before its first step (a copy)."""
    import copy

    built = []
    real = models_zoo.build_model

    def spy(*args, **kwargs):
        model = real(*args, **kwargs)
        if not built:
            built.append(copy.deepcopy(model).eval())
        return model

    monkeypatch.setattr(models_zoo, "build_model", spy)
    return built


def one_step(ds, out, **train):
    """One epoch of one step: the batch is the whole training split, so the logged train loss is
    the loss of the initial model on it."""
    n = json.loads((ds / "info.json").read_text())["num_train"]
    logs = TrainLogs()
    result = run(spec(ds, out, epochs=1, batch_size=n, optimizer="sgd", **train), [logs])
    assert result.status == "succeeded" and len(logs.train) == 1
    return logs.train[0]["loss"]


def split(ds, name):
    return torch.from_numpy(np.load(ds / f"X_{name}.npy")), torch.from_numpy(np.load(ds / f"y_{name}.npy"))


def test_label_smoothing_is_in_the_train_loss(cls_ds, tmp_path, initial_model):
    loss = one_step(cls_ds, tmp_path / "a", label_smoothing=0.2)
    X, y = split(cls_ds, "train")
    with torch.no_grad():
        logits = initial_model[0](X)
    F = torch.nn.functional
    assert loss == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.2).item(), rel=1e-5)
    assert abs(loss - F.cross_entropy(logits, y).item()) > 1e-3  # the test can tell the two apart


def test_label_smoothing_keeps_the_loss_of_a_perfect_fit_above_zero(cls_ds, tmp_path):
    logs = {s: TrainLogs() for s in (0.0, 0.2)}
    for s, rec in logs.items():
        r = run(spec(cls_ds, tmp_path / f"s{s}", epochs=30, learning_rate=0.05, label_smoothing=s), [rec])
        assert r.metrics["accuracy"] >= 0.95
    # Smoothed targets put 0.1 on the wrong class: the loss cannot fall below their entropy (0.325).
    assert logs[0.0].train[-1]["loss"] < 0.1
    assert logs[0.2].train[-1]["loss"] > 0.3


def test_mae_loss_is_the_train_loss(reg_ds, tmp_path, initial_model):
    loss = one_step(reg_ds, tmp_path / "a", regression_loss="mae")
    X, y = split(reg_ds, "train")
    norm = json.loads((reg_ds / "info.json").read_text())["target_normalization"]
    y = (y.float() - norm["mean"]) / norm["std"]  # the loop trains on standardised targets
    with torch.no_grad():
        pred = initial_model[0](X).squeeze(-1)
    assert loss == pytest.approx((pred - y).abs().mean().item(), rel=1e-5)
    assert abs(loss - ((pred - y) ** 2).mean().item()) > 1e-3
    mse = one_step(reg_ds, tmp_path / "b")
    assert mse == pytest.approx(((pred - y) ** 2).mean().item(), rel=1e-5)


def weights_moved(model_before, folder) -> float:
    after, _ = models_zoo.loading.load_model(folder / "artifacts")
    before = model_before.state_dict()
    return math.sqrt(sum(((v - before[k]) ** 2).sum().item() for k, v in after.state_dict().items()))


def test_gradient_clipping_bounds_the_step(cls_ds, tmp_path, initial_model):
    # Plain SGD moves the weights by lr × gradient: clipped to norm c, the step is lr × c exactly.
    lr, clip = 0.1, 1e-3
    one_step(cls_ds, tmp_path / "clipped", learning_rate=lr, grad_clip=clip)
    assert weights_moved(initial_model[0], tmp_path / "clipped") == pytest.approx(lr * clip, rel=1e-3)
    one_step(cls_ds, tmp_path / "free", learning_rate=lr)
    assert weights_moved(initial_model[0], tmp_path / "free") > 20 * lr * clip


@pytest.mark.parametrize("nesterov", [True, False])
def test_nesterov_reaches_the_optimizer(cls_ds, tmp_path, monkeypatch, nesterov):
    from workers.training import loop as loop_mod

    made = []
    real = loop_mod.make_optimizer
    monkeypatch.setattr(loop_mod, "make_optimizer", lambda model, tc: made.append(real(model, tc)) or made[-1])
    run(spec(cls_ds, tmp_path / "a", epochs=1, optimizer="sgd_momentum", momentum=0.8, nesterov=nesterov))
    group = made[0].param_groups[0]
    assert type(made[0]) is torch.optim.SGD
    assert group["nesterov"] is nesterov and group["momentum"] == 0.8


def test_early_stopping_stops_and_keep_best_exports_the_best_epoch(tmp_path):
    # Random labels: the network memorises the training split and validation loss soon rises.
    rng = np.random.default_rng(0)
    with open(tmp_path / "noise.csv", "w") as f:
        f.write("a,b,c,d,label\n")
        for row in rng.normal(size=(300, 4)):
            f.write(",".join(f"{v:.4f}" for v in row) + f",{rng.choice(['x', 'y'])}\n")
    ingest_csv(tmp_path / "noise.csv", tmp_path / "noise")
    rec = LRs()
    s = TrainSpec("mlp", {"hidden_sizes": [128, 128]},
                  {"epochs": 200, "batch_size": 16, "learning_rate": 0.01, "early_stopping_patience": 3,
                   "monitor": "loss", "keep": "best"}, str(tmp_path / "noise"), str(tmp_path / "job"),
                  device="cpu", log_interval=1e9)
    r = run(s, [rec])
    assert r.status == "succeeded" and r.epochs_completed < 200
    assert any(m.startswith("early stopping: validation loss has not improved for 3 epochs") for m in rec.messages)
    assert any(m.startswith("exported the best epoch") for m in rec.messages)
    cfg = json.loads((tmp_path / "job" / "artifacts" / "config.json").read_text())
    assert cfg["metrics"]["loss"] == pytest.approx(r.metrics["loss"])
    # The exported weights are the best epoch's: re-evaluating them gives the best loss.
    model, _ = models_zoo.loading.load_model(tmp_path / "job" / "artifacts")
    X = torch.from_numpy(np.load(tmp_path / "noise" / "X_val.npy"))
    y = torch.from_numpy(np.load(tmp_path / "noise" / "y_val.npy"))
    assert torch.nn.functional.cross_entropy(model(X), y).item() == pytest.approx(r.metrics["loss"], rel=1e-4)


def test_intra_op_threads_follow_the_cpus_the_worker_may_use(monkeypatch):
    """A worker pinned to fewer CPUs than the machine has (taskset, a cpuset per GPU) runs as
    many torch threads as it has CPUs, not one per core of the machine."""
    import os

    import torch

    from workers.training.loop import fit_cpu_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1}, raising=False)
        assert fit_cpu_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
        assert fit_cpu_threads() == 1  # never raised above what was set
    finally:
        torch.set_num_threads(before)


def test_training_flushes_subnormal_floats_to_zero_on_the_cpu(tmp_path):
    """Converging models push gradients into the subnormal range, where CPU arithmetic crawls
    (bench/cpu_denormals.py); the runtime turns flush-to-zero on before training."""
    import torch

    from tests.workers.test_training_loop import make_classification, make_spec
    from workers.training import run

    torch.set_flush_denormal(False)
    assert torch.tensor([1e-39], dtype=torch.float32).item() != 0.0  # subnormal, kept
    try:
        assert run(make_spec(make_classification(tmp_path), tmp_path / "job", epochs=1)).status == "succeeded"
        assert torch.tensor([1e-39], dtype=torch.float32).item() == 0.0  # flushed
        assert torch.tensor([1e-37], dtype=torch.float32).item() != 0.0  # normal numbers untouched
    finally:
        torch.set_flush_denormal(True)


ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
FTZ_PROBE = """
import sys
import torch
{setup}
x = torch.full((4_000_000,), 1e-30) * 1e-9  # subnormal results, computed by every pool thread
print(int((x != 0).sum()))
"""


@pytest.mark.parametrize(("setup", "kept"), [
    ("from workers.training.loop import tune_cpu; tune_cpu()", False),  # before the pool: all flushed
    ("torch.ones(4_000_000) * 1.0; torch.set_flush_denormal(True)", True),  # pool first: its threads keep them
])
def test_flush_to_zero_reaches_the_intra_op_threads_only_if_set_first(setup, kept):
    import subprocess
    import sys

    if torch.get_num_threads() < 2:
        pytest.skip("needs torch's intra-op pool (2+ threads)")
    out = subprocess.run([sys.executable, "-c", FTZ_PROBE.format(setup=setup)], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert (int(out) > 0) is kept, out


def test_each_worker_pool_process_tunes_the_cpu_at_its_start():
    """What a Celery pool process does at its start (worker_process_init) leaves its pool's
    threads flushing subnormals."""
    import os
    import subprocess
    import sys

    if torch.get_num_threads() < 2:
        pytest.skip("needs torch's intra-op pool (2+ threads)")
    setup = ("import workers.adapters.worker; from celery.signals import worker_process_init; "
             "worker_process_init.send(sender=None)")
    out = subprocess.run([sys.executable, "-c", FTZ_PROBE.format(setup=setup)], cwd=ROOT, capture_output=True,
                         text=True, env=dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) == 0, out.stdout
