"""Schedules, clipping, label smoothing, MAE, early stopping and best-model export."""

from __future__ import annotations

import json
import math

import numpy as np

import pytest
import torch

import models_zoo
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
    model, _ = models_zoo.load_model(tmp_path / "job" / "artifacts")
    X = torch.from_numpy(np.load(tmp_path / "noise" / "X_val.npy"))
    y = torch.from_numpy(np.load(tmp_path / "noise" / "y_val.npy"))
    assert torch.nn.functional.cross_entropy(model(X), y).item() == pytest.approx(r.metrics["loss"], rel=1e-4)
