"""The training runtime on tiny data, CPU only, no Django."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import models_zoo
from workers.datasets.tabular import ingest_csv
from workers.training import Callback, Control, TrainSpec, run
from workers.training.checkpoint import Checkpointer


def dataset(tmp_path, kind="classification", n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    path = tmp_path / f"{kind}.csv"
    with open(path, "w") as f:
        f.write("x1,x2,x3,y\n")
        for r in X:
            y = ("pos" if r[0] + 0.5 * r[1] > 0 else "neg") if kind == "classification" else \
                f"{3 * r[0] - 2 * r[1] + 0.05 * rng.normal():.5f}"
            f.write(",".join(f"{v:.5f}" for v in r) + f",{y}\n")
    out = tmp_path / f"{kind}-ds"
    ingest_csv(path, out)
    return out


class Recorder(Callback):
    def __init__(self):
        self.calls: list[str] = []
        self.logs: list[tuple] = []
        self.messages: list[str] = []

    def on_train_begin(self, state, control):
        self.calls.append("begin")

    def on_log(self, state, control, split, values):
        self.calls.append(f"log:{split}")
        self.logs.append((split, state.step, values))

    def on_eval(self, state, control, metrics):
        self.calls.append("eval")

    def on_samples(self, state, control, samples):
        self.calls.append("samples")
        self.samples = samples

    def on_message(self, state, control, level, text):
        self.messages.append(text)

    def on_epoch_end(self, state, control):
        self.calls.append("epoch_end")

    def on_train_end(self, state, control, status):
        self.calls.append(f"end:{status}")


def spec(ds, out, **train):
    train = {"epochs": 8, "batch_size": 16, "learning_rate": 0.01, **train}
    return TrainSpec("mlp", {"hidden_sizes": [16]}, train, str(ds), str(out))


def test_separable_problem_learns_and_callbacks_run_in_order(tmp_path):
    rec = Recorder()
    result = run(spec(dataset(tmp_path), tmp_path / "job"), [rec])
    assert result.status == "succeeded" and result.metrics["accuracy"] >= 0.95
    train_losses = [v["loss"] for s, _, v in rec.logs if s == "train"]
    assert train_losses[-1] < train_losses[0] / 2  # the loss goes down
    assert rec.calls[0] == "begin" and rec.calls[-1] == "end:succeeded"
    per_epoch = ["log:train", "log:val", "eval", "samples", "epoch_end"]
    body = [c for c in rec.calls[1:-1]]
    assert body == per_epoch * 8
    assert len(rec.samples) == 8 and {"prediction", "confidence", "truth"} <= set(rec.samples[0])
    assert {"precision", "recall", "f1", "confusion"} <= set(result.metrics)
    assert sorted(result.artifacts) == ["config.json", "model.safetensors"]


def test_regression_reaches_r2(tmp_path):
    result = run(spec(dataset(tmp_path, "regression"), tmp_path / "job", epochs=30, learning_rate=0.01))
    assert result.metrics["r2"] >= 0.95 and result.metrics["mae"] < 0.5


@pytest.mark.parametrize("optimizer", ["sgd", "sgd_momentum", "adam", "adamw", "rmsprop"])
def test_every_optimizer_trains(tmp_path, optimizer):
    result = run(spec(dataset(tmp_path, n=100), tmp_path / "job", epochs=2, optimizer=optimizer))
    assert np.isfinite(result.metrics["loss"])


def test_stop_at_a_step_boundary_means_cancelled_without_artifacts(tmp_path):
    class StopAfter(Callback):
        def on_step_end(self, state, control):
            if state.step == 5:
                control.should_stop = True

    rec = Recorder()
    result = run(spec(dataset(tmp_path), tmp_path / "job"), [StopAfter(), rec], Control())
    assert result.status == "cancelled" and result.artifacts == [] and rec.calls[-1] == "end:cancelled"
    assert not (tmp_path / "job" / "artifacts").exists()


def test_resume_matches_an_uninterrupted_run(tmp_path):
    ds = dataset(tmp_path)
    full = run(spec(ds, tmp_path / "full", epochs=6))

    class StopAtEpoch3(Callback):
        def on_epoch_end(self, state, control):
            if state.epoch == 3:
                control.should_stop = True

    first = run(spec(ds, tmp_path / "resumed", epochs=6), [StopAtEpoch3()])
    assert first.status == "cancelled" and first.epochs_completed == 3
    rec = Recorder()
    second = run(spec(ds, tmp_path / "resumed", epochs=6), [rec])
    assert second.status == "succeeded" and second.epochs_completed == 6
    assert any("resumed from the checkpoint after epoch 3" in m for m in rec.messages)
    assert rec.calls.count("epoch_end") == 3
    for key in ("loss", "accuracy"):
        assert second.metrics[key] == pytest.approx(full.metrics[key], abs=1e-4)


def test_exported_model_loads_and_predicts_the_same(tmp_path):
    ds = dataset(tmp_path)
    run(spec(ds, tmp_path / "job", epochs=3))
    model, cfg = models_zoo.load_model(tmp_path / "job" / "artifacts")
    assert cfg["architecture"] == "mlp" and cfg["class_names"] == ["neg", "pos"]
    X_val = torch.from_numpy(np.load(ds / "X_val.npy"))
    ckpt = torch.load(sorted((tmp_path / "job" / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    same = models_zoo.build_model("mlp", cfg["model_config"], cfg["dataset"])
    same.load_state_dict(ckpt["model"])
    same.eval()
    assert torch.allclose(model(X_val), same(X_val))


def test_checkpoints_keep_two_fall_back_and_refuse_pickles(tmp_path):
    ck = Checkpointer(tmp_path / "ck")
    for epoch in range(1, 5):
        ck.save({"epoch": epoch, "w": torch.ones(2) * epoch}, epoch)
    assert [p.name for p in ck.paths()] == ["ckpt-000004.pt", "ckpt-000003.pt"]
    ck.paths()[0].write_bytes(b"torn write")
    assert ck.load_latest("cpu")["epoch"] == 3

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"epoch": 9, "evil": Evil()}, tmp_path / "ck" / "ckpt-000009.pt")
    assert ck.load_latest("cpu")["epoch"] == 3  # the pickle payload is refused, not run
    assert not marker.exists()


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ck = Checkpointer(tmp_path / "ck")
    ck.save({"epoch": 1}, 1)

    def no_space(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(OSError):
        ck.save({"epoch": 2}, 2)
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["ckpt-000001.pt"]
    assert ck.load_latest("cpu")["epoch"] == 1


def test_batch_norm_with_a_trailing_single_sample_batch(tmp_path):
    ds = dataset(tmp_path, n=400)  # 320 training rows: batch size 319 leaves one sample over
    s = TrainSpec("mlp", {"hidden_sizes": [8], "norm": "batch"}, {"epochs": 2, "batch_size": 319}, str(ds),
                  str(tmp_path / "job"))
    assert run(s).status == "succeeded"
