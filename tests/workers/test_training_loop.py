"""The training runtime end to end on tiny generated data (CPU, no Django, no Redis)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import models_zoo  # noqa: E402
import models_zoo.loading  # noqa: E402
from workers.datasets.tabular import ingest_csv  # noqa: E402
from workers.training import Callback, Control, TrainSpec, run  # noqa: E402
from workers.training import checkpoint as checkpoint_mod  # noqa: E402
from workers.training import loop as loop_mod  # noqa: E402
from workers.training.checkpoint import Checkpointer  # noqa: E402

# -- data ------------------------------------------------------------------------------------


def _write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(r) + "\n")
    return path


def make_classification(directory, n=200, seed=0):
    """Two well-separated classes: the label is the side of the line x1 + x2 = 0 (with a margin)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n * 2, 2))
    X = X[np.abs(X.sum(1)) > 0.3][:n]
    rows = [(f"{a:.5f}", f"{b:.5f}", "above" if a + b > 0 else "below") for a, b in X]
    src = _write_csv(directory / "cls.csv", ["x1", "x2", "side"], rows)
    out = directory / "cls-ds"
    ingest_csv(src, out)
    return out


def make_regression(directory, n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = 3 * X[:, 0] - 2 * X[:, 1] + 0.1 * rng.normal(size=n)
    rows = [(f"{a:.5f}", f"{b:.5f}", f"{t:.5f}") for (a, b), t in zip(X, y)]
    src = _write_csv(directory / "reg.csv", ["x1", "x2", "y"], rows)
    out = directory / "reg-ds"
    ingest_csv(src, out)
    return out


def make_spec(ds, out, model=None, log_interval=1e9, **train):
    train = {"epochs": 4, "batch_size": 32, "learning_rate": 0.03, **train}
    return TrainSpec("mlp", model if model is not None else {"hidden_sizes": [16]}, train, str(ds), str(out),
                     device="cpu", log_interval=log_interval)


# -- a recording callback -------------------------------------------------------------------


class Recorder(Callback):
    def __init__(self):
        self.events: list[tuple] = []
        self.logs: list[tuple[str, int, dict]] = []
        self.evals: list[dict] = []
        self.samples: list[list[dict]] = []
        self.messages: list[tuple[str, str]] = []
        self.begin_state: dict | None = None

    def on_train_begin(self, state, control):
        self.events.append(("begin",))
        self.begin_state = {"epoch": state.epoch, "step": state.step, "start_step": state.start_step,
                            "steps_per_epoch": state.steps_per_epoch, "total_steps": state.total_steps}

    def on_step_end(self, state, control):
        self.events.append(("step", state.step))

    def on_log(self, state, control, split, values):
        self.events.append(("log", split))
        self.logs.append((split, state.step, dict(values)))

    def on_eval(self, state, control, metrics):
        self.events.append(("eval", state.epoch))
        self.evals.append(metrics)

    def on_samples(self, state, control, samples):
        self.events.append(("samples", state.epoch))
        self.samples.append(samples)

    def on_message(self, state, control, level, text):
        self.events.append(("message", level))
        self.messages.append((level, text))

    def on_epoch_end(self, state, control):
        self.events.append(("epoch_end", state.epoch))

    def on_train_end(self, state, control, status):
        self.events.append(("end", status))

    def names(self, *, steps=False, messages=False):
        return [e for e in self.events if (steps or e[0] != "step") and (messages or e[0] != "message")]


class StopAtEpoch(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, state, control):
        if state.epoch == self.epoch:
            control.should_stop = True


def comparable(metrics: dict) -> dict:
    """Metrics that depend on the numbers only (not on wall-clock time)."""
    return {k: v for k, v in metrics.items() if k not in {"samples_per_s", "train_seconds", "confusion"}}


# -- (1) learning a separable problem ---------------------------------------------------------


def test_separable_classification_learns(cls_ds, tmp_path):
    rec = Recorder()
    result = run(make_spec(cls_ds, tmp_path / "job", epochs=8), [rec])
    assert result.status == "succeeded"
    assert result.epochs_completed == 8
    assert result.metrics["accuracy"] >= 0.95
    val_losses = [e["loss"] for e in rec.evals]
    train_losses = [v["loss"] for split, _, v in rec.logs if split == "train"]
    assert len(val_losses) == 8 and len(train_losses) == 8
    assert val_losses[-1] < val_losses[0] / 2
    assert train_losses[-1] < train_losses[0] / 2
    assert all(math.isfinite(x) for x in val_losses + train_losses)
    assert rec.evals[-1]["accuracy"] == result.metrics["accuracy"]
    for key in ("loss", "accuracy", "precision", "recall", "f1", "confusion"):
        assert key in result.metrics
    confusion = np.array(result.metrics["confusion"])
    assert confusion.shape == (2, 2) and confusion.sum() == 40
    assert confusion.trace() / confusion.sum() == pytest.approx(result.metrics["accuracy"])
    assert sorted(result.artifacts) == ["MODEL_CARD.md", "config.json", "model.safetensors"]
    # Train-metric logs carry the running accuracy and throughput.
    _, _, last_train = [log for log in rec.logs if log[0] == "train"][-1]
    assert {"loss", "accuracy", "lr", "samples_per_s"} <= set(last_train)
    assert last_train["accuracy"] >= 0.9


# -- (2) regression ----------------------------------------------------------------------------


def test_regression_reaches_r2(reg_ds, tmp_path):
    rec = Recorder()
    result = run(make_spec(reg_ds, tmp_path / "job", model={"hidden_sizes": [32]}, epochs=15,
                           learning_rate=0.01), [rec])
    assert result.status == "succeeded"
    assert result.metrics["r2"] >= 0.95
    assert result.metrics["mae"] < 0.6
    assert {"loss", "mse", "mae", "r2"} <= set(result.metrics)
    # mse is reported in the target's units, loss in standardised units.
    info = models_zoo.loading.load_model(tmp_path / "job" / "artifacts")[1]["dataset"]
    std = info["target_normalization"]["std"]
    assert result.metrics["mse"] == pytest.approx(result.metrics["loss"] * std**2, rel=1e-3)
    # Regression samples are numbers in the original units.
    sample = rec.samples[-1][0]
    assert set(sample) == {"item", "prediction", "truth"}
    assert abs(sample["prediction"] - sample["truth"]) < 2.0


# -- (3) callbacks ---------------------------------------------------------------------------


def test_callbacks_are_called_in_order(cls_ds, tmp_path):
    rec = Recorder()
    result = run(make_spec(cls_ds, tmp_path / "job", epochs=3), [rec])
    assert result.status == "succeeded"
    assert rec.events[0] == ("begin",)
    assert rec.events[-1] == ("end", "succeeded")
    per_epoch = lambda e: [("log", "train"), ("log", "val"), ("eval", e), ("samples", e), ("epoch_end", e)]  # noqa: E731
    assert rec.names()[1:-1] == per_epoch(1) + per_epoch(2) + per_epoch(3)
    # Steps: 160 training rows / 32 = 5 per epoch, numbered globally, all before their epoch's eval.
    steps = [e[1] for e in rec.events if e[0] == "step"]
    assert steps == list(range(1, 16))
    assert rec.begin_state == {"epoch": 0, "step": 0, "start_step": 0, "steps_per_epoch": 5, "total_steps": 15}
    first_eval = rec.events.index(("eval", 1))
    assert [e for e in rec.events[:first_eval] if e[0] == "step"] == [("step", i) for i in range(1, 6)]
    # Samples: the same fixed validation rows every epoch, with class names.
    assert len(rec.samples) == 3
    items = [[s["item"] for s in samples] for samples in rec.samples]
    assert items[0] == items[1] == items[2] and len(items[0]) == 8
    assert {"item", "prediction", "confidence", "truth", "correct"} == set(rec.samples[0][0])
    assert all(s["prediction"] in {"above", "below"} for s in rec.samples[-1])
    # Val logs hold the metrics without the confusion matrix; eval gets it.
    val_logs = [v for split, _, v in rec.logs if split == "val"]
    assert all("confusion" not in v for v in val_logs)
    assert all("confusion" in m for m in rec.evals)


def test_train_logs_follow_the_log_interval(cls_ds, tmp_path):
    rec = Recorder()
    run(make_spec(cls_ds, tmp_path / "job", epochs=2, log_interval=0.0), [rec])
    train_steps = [step for split, step, _ in rec.logs if split == "train"]
    assert train_steps == list(range(1, 11))  # every step when the interval is zero
    assert all(v["samples_per_s"] > 0 for split, _, v in rec.logs if split == "train")


def test_several_callbacks_see_every_hook_in_list_order(cls_ds, tmp_path):
    seen = []

    class Tag(Callback):
        def __init__(self, tag):
            self.tag = tag

        def on_epoch_end(self, state, control):
            seen.append(self.tag)

    run(make_spec(cls_ds, tmp_path / "job", epochs=2), [Tag("a"), Tag("b")])
    assert seen == ["a", "b", "a", "b"]


# -- (4) optimizers ----------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "sgd_momentum", "adam", "adamw", "rmsprop"])
def test_every_optimizer_runs(cls_ds, tmp_path, optimizer):
    rec = Recorder()
    result = run(make_spec(cls_ds, tmp_path / "job", epochs=2, learning_rate=0.01, optimizer=optimizer,
                           weight_decay=1e-4), [rec])
    assert result.status == "succeeded"
    assert math.isfinite(result.metrics["loss"])
    assert all(math.isfinite(v["loss"]) for _, _, v in rec.logs)


def test_make_optimizer_uses_the_settings():
    from models_zoo.hparams import TrainConfig

    model = torch.nn.Linear(2, 2)
    expect = {"sgd": (torch.optim.SGD, 0), "sgd_momentum": (torch.optim.SGD, 0.8),
              "adam": (torch.optim.Adam, None), "adamw": (torch.optim.AdamW, None),
              "rmsprop": (torch.optim.RMSprop, 0.8)}
    for name, (cls, momentum) in expect.items():
        opt = loop_mod.make_optimizer(model, TrainConfig(optimizer=name, learning_rate=0.05, momentum=0.8,
                                                         weight_decay=0.01))
        assert type(opt) is cls
        group = opt.param_groups[0]
        assert group["lr"] == 0.05 and group["weight_decay"] == 0.01
        if momentum is not None:
            assert group["momentum"] == momentum


# -- (5) cancel ---------------------------------------------------------------------------------


class StopAtStep(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, state, control):
        if state.step == self.step:
            control.should_stop = True


def test_stop_from_on_step_end_cancels_without_artifacts(cls_ds, tmp_path):
    rec = Recorder()
    control = Control()
    result = run(make_spec(cls_ds, tmp_path / "job", epochs=4), [StopAtStep(3), rec], control)
    assert control.should_stop
    assert result.status == "cancelled"
    assert result.artifacts == []
    assert result.epochs_completed == 0
    assert not (tmp_path / "job" / "artifacts").exists()
    assert rec.events[-1] == ("end", "cancelled")
    assert [e[1] for e in rec.events if e[0] == "step"] == [1, 2, 3]  # stops right at the step
    assert not any(e[0] in {"eval", "epoch_end"} for e in rec.events)
    assert Checkpointer(tmp_path / "job" / "checkpoints").paths() == []


def test_stop_in_a_later_epoch_keeps_the_finished_epochs_checkpoint(cls_ds, tmp_path):
    result = run(make_spec(cls_ds, tmp_path / "job", epochs=4), [StopAtStep(7)])
    assert result.status == "cancelled" and result.artifacts == []
    assert result.epochs_completed == 1
    assert [p.name for p in Checkpointer(tmp_path / "job" / "checkpoints").paths()] == ["ckpt-000001.pt"]
    assert not (tmp_path / "job" / "artifacts").exists()


# -- (6) resume ---------------------------------------------------------------------------------


RESUME_MODEL = {"hidden_sizes": [16, 8], "dropout": 0.2, "norm": "batch"}  # dropout: the RNG must resume too


def test_resume_matches_an_uninterrupted_run(cls_ds, tmp_path):
    full = run(make_spec(cls_ds, tmp_path / "full", model=RESUME_MODEL, epochs=6))
    assert full.status == "succeeded" and full.epochs_completed == 6

    first_rec = Recorder()
    first = run(make_spec(cls_ds, tmp_path / "job", model=RESUME_MODEL, epochs=6), [StopAtEpoch(3), first_rec])
    assert first.status == "cancelled" and first.epochs_completed == 3 and first.artifacts == []
    assert first_rec.events[-1] == ("end", "cancelled")
    assert not (tmp_path / "job" / "artifacts").exists()
    assert not any("resumed" in text for _, text in first_rec.messages)

    rec = Recorder()
    second = run(make_spec(cls_ds, tmp_path / "job", model=RESUME_MODEL, epochs=6), [rec])
    assert second.status == "succeeded"
    assert second.epochs_completed == 6
    assert any("resumed" in text and "epoch 3" in text for _, text in rec.messages)
    assert rec.events[0] == ("begin",)  # on_train_begin still comes first
    assert rec.events[-1] == ("end", "succeeded")
    assert rec.begin_state["epoch"] == 3 and rec.begin_state["step"] == 15 and rec.begin_state["start_step"] == 15
    assert [e[1] for e in rec.events if e[0] == "epoch_end"] == [4, 5, 6]
    assert [e[1] for e in rec.events if e[0] == "step"] == list(range(16, 31))

    a, b = comparable(full.metrics), comparable(second.metrics)
    assert a.keys() == b.keys()
    for key in a:
        assert b[key] == pytest.approx(a[key], abs=1e-4), key
    assert second.metrics["confusion"] == full.metrics["confusion"]
    # The exported weights agree too.
    m_full, _ = models_zoo.loading.load_model(tmp_path / "full" / "artifacts")
    m_resumed, _ = models_zoo.loading.load_model(tmp_path / "job" / "artifacts")
    for (k, v1), (_, v2) in zip(m_full.state_dict().items(), m_resumed.state_dict().items()):
        torch.testing.assert_close(v2, v1, atol=1e-5, rtol=1e-5, msg=k)


@pytest.mark.parametrize("schedule", [{}, {"lr_schedule": "cosine"}, {"lr_schedule": "step", "step_epochs": 1}])
def test_a_continuation_trains_at_its_new_learning_rate_from_where_the_schedule_stood(cls_ds, tmp_path, schedule):
    """Continue training with a new learning rate (webapp continue_job copies the checkpoint):
    the job's configured rate wins over the checkpoint's, at the schedule position reached."""
    import shutil

    run(make_spec(cls_ds, tmp_path / "a", epochs=2, learning_rate=0.01, **schedule))
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "checkpoints" / "ckpt-000002.pt", tmp_path / "b" / "checkpoints")
    rec = Recorder()
    result = run(make_spec(cls_ds, tmp_path / "b", log_interval=0, epochs=4, learning_rate=0.001, **schedule), [rec])
    assert result.status == "succeeded" and any("resumed" in t and "epoch 2" in t for _, t in rec.messages)
    lrs = [v["lr"] for split, step, v in rec.logs if split == "train" and "lr" in v]
    assert lrs and max(lrs) <= 0.001 * (1 + 1e-6)  # never the old 0.01
    if not schedule:  # constant: exactly the new rate
        assert all(lr == pytest.approx(0.001) for lr in lrs)
    # The same job resumed with its own rate follows its schedule exactly (the rule is idempotent).
    again, straight = Recorder(), Recorder()
    run(make_spec(cls_ds, tmp_path / "a", log_interval=0, epochs=3, learning_rate=0.01, **schedule), [again])
    run(make_spec(cls_ds, tmp_path / "c", log_interval=0, epochs=3, learning_rate=0.01, **schedule), [straight])
    tail = {step: v["lr"] for split, step, v in straight.logs if split == "train" and "lr" in v}
    resumed = {step: v["lr"] for split, step, v in again.logs if split == "train" and "lr" in v}
    assert resumed and resumed == {step: tail[step] for step in resumed}


def test_resume_falls_back_past_a_corrupt_checkpoint(cls_ds, tmp_path):
    run(make_spec(cls_ds, tmp_path / "job", epochs=5), [StopAtEpoch(3)])
    ck = Checkpointer(tmp_path / "job" / "checkpoints")
    assert [p.name for p in ck.paths()] == ["ckpt-000003.pt", "ckpt-000002.pt"]
    ck.paths()[0].write_bytes(b"torn")
    rec = Recorder()
    result = run(make_spec(cls_ds, tmp_path / "job", epochs=5), [rec])
    assert result.status == "succeeded" and result.epochs_completed == 5
    assert any("after epoch 2" in text for _, text in rec.messages)
    assert [e[1] for e in rec.events if e[0] == "epoch_end"] == [3, 4, 5]


def test_rerun_after_the_last_epoch_only_exports(cls_ds, tmp_path):
    first = run(make_spec(cls_ds, tmp_path / "job", epochs=2))
    (tmp_path / "job" / "artifacts" / "model.safetensors").unlink()
    rec = Recorder()
    again = run(make_spec(cls_ds, tmp_path / "job", epochs=2), [rec])
    assert again.status == "succeeded" and again.epochs_completed == 2
    assert not any(e[0] in {"step", "eval"} for e in rec.events)
    assert again.metrics["accuracy"] == pytest.approx(first.metrics["accuracy"])
    assert (tmp_path / "job" / "artifacts" / "model.safetensors").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resume_on_cuda(cls_ds, tmp_path):
    spec = TrainSpec("mlp", RESUME_MODEL, {"epochs": 3, "batch_size": 32}, str(cls_ds), str(tmp_path / "job"),
                     device="cuda")
    assert run(spec, [StopAtEpoch(1)]).status == "cancelled"
    rec = Recorder()
    result = run(spec, [rec])
    assert result.status == "succeeded" and result.epochs_completed == 3
    assert any("resumed" in text for _, text in rec.messages)


# -- (7) export ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["classification", "regression"])
def test_exported_artifacts_predict_like_the_trained_model(cls_ds, reg_ds, tmp_path, monkeypatch, which):
    ds = cls_ds if which == "classification" else reg_ds
    captured = {}
    real_export = loop_mod.export_model

    def spy(output_dir, spec, model, info, tc, metrics, *rest):
        captured["model"] = model
        return real_export(output_dir, spec, model, info, tc, metrics, *rest)

    monkeypatch.setattr(loop_mod, "export_model", spy)
    model_cfg = {"hidden_sizes": "16,8", "activation": "tanh", "norm": "batch", "dropout": 0.1}
    rec = Recorder()
    result = run(make_spec(ds, tmp_path / "job", model=model_cfg, epochs=2, learning_rate=0.01), [rec])
    assert sorted(result.artifacts) == ["MODEL_CARD.md", "config.json", "model.safetensors"]

    loaded, cfg = models_zoo.loading.load_model(tmp_path / "job" / "artifacts")
    assert not loaded.training
    assert cfg["format"] == "trainyard-model/1"
    assert cfg["architecture"] == "mlp"
    assert cfg["model_config"] == model_cfg
    assert cfg["train_config"]["epochs"] == 2 and cfg["train_config"]["optimizer"] == "adam"
    assert cfg["input_shape"] == [2]
    assert "confusion" not in cfg["metrics"]
    assert cfg["metrics"]["loss"] == pytest.approx(result.metrics["loss"])
    assert {"normalization", "feature_names", "task"} <= set(cfg["dataset"])
    if which == "classification":
        assert cfg["class_names"] == ["above", "below"] == cfg["dataset"]["classes"]
    else:
        assert cfg["class_names"] is None and "target_normalization" in cfg["dataset"]

    trained = captured["model"].eval()
    X_val = torch.from_numpy(np.load(ds / "X_val.npy", allow_pickle=False))
    with torch.no_grad():
        expected, got = trained(X_val), loaded(X_val)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)

    # The last epoch's samples came from the same predictions.
    for s in rec.samples[-1]:
        i = int(s["item"].rsplit(" ", 1)[1])
        if which == "classification":
            assert s["prediction"] == cfg["class_names"][int(got[i].argmax())]
        else:
            tn = cfg["dataset"]["target_normalization"]
            assert s["prediction"] == pytest.approx(float(got[i, 0]) * tn["std"] + tn["mean"], abs=1e-4)


# -- (8) checkpoints -----------------------------------------------------------------------------


def test_checkpointer_keeps_the_last_two(tmp_path):
    ck = Checkpointer(tmp_path / "ck")
    assert ck.paths() == [] and ck.load_latest("cpu") is None
    for epoch in range(1, 6):
        path = ck.save({"epoch": epoch, "w": torch.full((3,), float(epoch))}, epoch)
        assert path.name == f"ckpt-{epoch:06d}.pt"
    assert [p.name for p in ck.paths()] == ["ckpt-000005.pt", "ckpt-000004.pt"]
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["ckpt-000004.pt", "ckpt-000005.pt"]
    latest = ck.load_latest("cpu")
    assert latest["epoch"] == 5 and torch.equal(latest["w"], torch.full((3,), 5.0))


@pytest.mark.parametrize("damage", [b"", b"not a zip file", "truncate"])
def test_corrupt_newest_checkpoint_falls_back(tmp_path, damage):
    ck = Checkpointer(tmp_path / "ck")
    ck.save({"epoch": 1, "w": torch.ones(4)}, 1)
    newest = ck.save({"epoch": 2, "w": torch.ones(4) * 2}, 2)
    if damage == "truncate":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    else:
        newest.write_bytes(damage)
    assert ck.load_latest("cpu")["epoch"] == 1
    for p in ck.paths():
        p.write_bytes(b"junk")
    assert ck.load_latest("cpu") is None


class _Malicious:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_load_refuses_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    ck = Checkpointer(tmp_path / "ck")
    ck.save({"epoch": 1, "w": torch.zeros(2)}, 1)
    torch.save({"epoch": 2, "payload": _Malicious(marker)}, tmp_path / "ck" / "ckpt-000002.pt")
    assert ck.paths()[0].name == "ckpt-000002.pt"

    assert ck.load_latest("cpu")["epoch"] == 1  # the pickle is refused, the older one is used
    assert not marker.exists()

    (tmp_path / "ck" / "ckpt-000001.pt").unlink()
    assert ck.load_latest("cpu") is None
    assert not marker.exists()
    # Sanity: the payload does run when unpickled without weights_only.
    torch.load(tmp_path / "ck" / "ckpt-000002.pt", weights_only=False)
    assert marker.exists()


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ck = Checkpointer(tmp_path / "ck")
    ck.save({"epoch": 1, "w": torch.ones(2)}, 1)
    ck.save({"epoch": 2, "w": torch.ones(2) * 2}, 2)
    before = {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()}

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_mod.torch, "save", disk_full)
    with pytest.raises(OSError) as exc:
        ck.save({"epoch": 3, "w": torch.ones(2) * 3}, 3)
    assert exc.value.errno == 28
    monkeypatch.undo()

    after = {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()}
    assert after == before  # no temp file, nothing rotated away, nothing rewritten
    assert ck.load_latest("cpu")["epoch"] == 2


def test_a_failing_checkpoint_fails_the_run_but_keeps_the_last_good_one(cls_ds, tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def flaky(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_mod.torch, "save", flaky)
    with pytest.raises(OSError):
        run(make_spec(cls_ds, tmp_path / "job", epochs=3))
    monkeypatch.undo()
    names = sorted(p.name for p in (tmp_path / "job" / "checkpoints").iterdir())
    assert names == ["ckpt-000001.pt"]
    assert not (tmp_path / "job" / "artifacts").exists()
    # And a rerun resumes from it.
    rec = Recorder()
    assert run(make_spec(cls_ds, tmp_path / "job", epochs=3), [rec]).epochs_completed == 3
    assert any("after epoch 1" in text for _, text in rec.messages)


def test_batch_norm_with_a_trailing_single_sample_batch(cls_ds, tmp_path):
    # 160 training rows and batch size 159 leave one sample over; batch norm cannot train on it.
    spec = make_spec(cls_ds, tmp_path / "job", model={"hidden_sizes": [8], "norm": "batch"}, epochs=2,
                     batch_size=159)
    assert run(spec).status == "succeeded"


def test_model_card_records_data_settings_metrics_and_versions(cls_ds, tmp_path):
    run(make_spec(cls_ds, tmp_path / "job", epochs=2, seed=7))
    card = (tmp_path / "job" / "artifacts" / "MODEL_CARD.md").read_text()
    for text in ("# Model card: mlp", "task: classification", "classes (2): above, below", "seeded random split",
                 "- seed: 7", "- epochs: 2", "- hidden_sizes: [16]", "- accuracy: ", "torch 2."):
        assert text in card, text


# -- (9) validation metrics against references -----------------------------------------------------


def _logits_for(pred, k):
    """Logits whose argmax is `pred` (with varied confidence, so the loss is not trivial)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(len(pred), k, generator=g)
    margin = torch.rand(len(pred), generator=g) * 3 + 0.1
    logits[torch.arange(len(pred)), torch.as_tensor(pred)] = logits.max(1).values + margin
    return logits


@pytest.mark.parametrize("case", ["imbalanced", "a class only predicted", "a class in neither"])
def test_classification_metrics_match_scikit_learn(case):
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    # Three classes, 50 / 12 / 6 in the truth; class 0 is predicted too often.
    truth = [0] * 50 + [1] * 12 + [2] * 6
    pred = [0] * 44 + [1] * 4 + [2] * 2 + [1] * 7 + [0] * 5 + [2] * 2 + [0] * 3 + [1] * 1
    k = 3
    if case == "a class only predicted":  # class 3 never occurs in the truth
        pred[:3] = [3, 3, 3]
        k = 4
    elif case == "a class in neither":  # a rare class missing from the validation split
        k = 4
    logits, y = _logits_for(pred, k), torch.tensor(truth)
    m = loop_mod.classification_metrics(logits, y)

    p, r, f1, _ = precision_recall_fscore_support(truth, pred, average="macro", zero_division=0)
    assert m["precision"] == pytest.approx(p) and m["recall"] == pytest.approx(r) and m["f1"] == pytest.approx(f1)
    assert m["accuracy"] == pytest.approx(accuracy_score(truth, pred))
    assert m["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())
    # Rows are the truth, columns the prediction.
    assert m["confusion"] == confusion_matrix(truth, pred, labels=list(range(k))).tolist()
    assert [sum(row) for row in m["confusion"]][:3] == [50, 12, 6]


def test_perfect_predictions_score_one_when_the_split_lacks_a_class():
    m = loop_mod.classification_metrics(_logits_for([0, 1, 1, 0], 3), torch.tensor([0, 1, 1, 0]))
    assert m["accuracy"] == m["precision"] == m["recall"] == m["f1"] == 1.0


@pytest.fixture(scope="module")
def corpus_ds(tmp_path_factory):
    from tests import datagen
    from workers.datasets import ingest

    d = tmp_path_factory.mktemp("corpus")
    ingest("corpus", datagen.repetitive_corpus(d / "corpus.txt", repeats=120), d / "cache", {})
    return d / "cache"


@pytest.fixture(scope="module")
def text_ds(tmp_path_factory):
    from tests import datagen
    from workers.datasets import ingest

    d = tmp_path_factory.mktemp("text")
    ingest("text", datagen.sentiment_csv(d / "s.csv", n=400), d / "cache", {"seed": 0})
    return d / "cache"


GPT = {"layers": 1, "width": 16, "heads": 2, "block_size": 16}


def test_lm_perplexity_is_exp_of_the_validation_loss(corpus_ds, tmp_path):
    rec = Recorder()
    spec = TrainSpec("gpt", GPT, {"epochs": 1, "batch_size": 16, "learning_rate": 3e-3}, str(corpus_ds),
                     str(tmp_path / "job"), device="cpu", log_interval=1e9)
    result = run(spec, [rec])
    assert result.status == "succeeded"
    assert result.metrics["perplexity"] == pytest.approx(math.exp(result.metrics["loss"]), rel=1e-9)
    for split, _, values in rec.logs:
        assert values["perplexity"] == pytest.approx(math.exp(values["loss"]), rel=1e-9), split
    # And the validation loss is the exported model's mean next-token cross-entropy on the
    # validation text (windows of block_size tokens, one after another).
    model, _ = models_zoo.loading.load_model(tmp_path / "job" / "artifacts")
    stream = torch.from_numpy(np.load(corpus_ds / "val.npy")).long()
    block = GPT["block_size"]
    starts = range(0, len(stream) - block - 1, block)[: loop_mod.MAX_EVAL_WINDOWS]
    windows = torch.stack([stream[s : s + block + 1] for s in starts])
    with torch.no_grad():
        out = model(windows[:, :-1])
    expected = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), windows[:, 1:].reshape(-1))
    assert result.metrics["loss"] == pytest.approx(expected.item(), rel=1e-4)


# -- (10) no host sync per step ------------------------------------------------------------------


class SyncCounter:
    """Counts what would make the host wait for the device on CUDA: reading a tensor's values
    (`item`, `tolist`, `cpu`, `numpy`, anywhere) and, in the project's own code, truth values,
    `int()`/`float()` of tensors and blocking copies to a device (`to(device)` without
    `non_blocking=True`, `cuda()`, `torch.tensor(..., device=)`). On the CPU nothing waits; the
    count shows what would."""

    ROOTS = tuple(str(Path(models_zoo.__file__).resolve().parent.parent / d) for d in ("workers", "models_zoo"))

    def __init__(self, monkeypatch):
        import sys

        self.n = 0
        self.where: list[str] = []

        def mine() -> str | None:
            code = sys._getframe(2).f_code
            return f"{code.co_filename}:{code.co_name}" if code.co_filename.startswith(self.ROOTS) else None

        def hit(what):
            self.n += 1
            self.where.append(what)

        def reads(name):
            real = getattr(torch.Tensor, name)

            def wrapper(t, *args, **kwargs):
                hit(f"{name} from {mine() or 'torch'}")
                return real(t, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, wrapper)

        def in_project(name, blocking=lambda args, kwargs: True, owner=torch.Tensor):
            real = getattr(owner, name)

            def wrapper(*args, **kwargs):
                where = mine()
                if where and blocking(args, kwargs):
                    hit(f"{name} from {where}")
                return real(*args, **kwargs)
            monkeypatch.setattr(owner, name, wrapper)

        def blocking_to(args, kwargs):
            target = kwargs.get("device", args[1] if len(args) > 1 else None)
            moves = isinstance(target, (torch.device, str, torch.Tensor, int)) and not isinstance(target, bool)
            return moves and not kwargs.get("non_blocking", False) and not any(a is True for a in args[2:])

        for name in ("item", "tolist", "cpu", "numpy"):
            reads(name)
        for name in ("__bool__", "__int__", "__float__", "__index__", "cuda"):
            in_project(name)
        in_project("to", blocking_to)
        for name in ("tensor", "as_tensor"):
            in_project(name, lambda args, kwargs: kwargs.get("device") is not None, owner=torch)


class SyncsPerStep(Callback):
    def __init__(self, counter):
        self.counter = counter
        self.segments: list[list[int]] = []  # per epoch: the count at its start, then at each step end
        self.log_costs: list[int] = []
        self.other_reads: set[str] = set()

    def on_train_begin(self, state, control):
        self.segments.append([self.counter.n])

    def on_step_end(self, state, control):
        self.segments[-1].append(self.counter.n)

    def on_log(self, state, control, split, values):
        if split == "train":
            # The epoch's last train point is reported after the evaluation, with the validation
            # results: count the reads since the last step that are not the evaluation's.
            since = self.counter.where[self.segments[-1][-1]:self.counter.n]
            self.log_costs.append(sum(1 for w in since if w.endswith("loop.py:_train_values")))
            self.other_reads.update(w.rsplit(":", 1)[-1] for w in since if not w.endswith("loop.py:_train_values"))

    def on_epoch_end(self, state, control):
        self.segments.append([self.counter.n])


@pytest.mark.parametrize(("arch", "dataset", "model", "batch"), [
    ("mlp", "cls_ds", {"hidden_sizes": [16], "norm": "batch"}, 4),
    ("rnn", "text_ds", {"cell": "gru", "hidden_size": 8, "embedding_dim": 8}, 8),
    ("rnn", "text_ds", {"cell": "lstm", "hidden_size": 8, "embedding_dim": 8, "bidirectional": True,
                        "readout": "mean", "num_layers": 2}, 8),
    ("transformer", "text_ds", {"layers": 1, "width": 16, "heads": 2}, 8),
    ("gpt", "corpus_ds", GPT, 16),
])
def test_the_hot_loop_does_not_sync_per_step(request, tmp_path, monkeypatch, arch, dataset, model, batch):
    ds = request.getfixturevalue(dataset)
    counter = SyncCounter(monkeypatch)
    watch = SyncsPerStep(counter)
    spec = TrainSpec(arch, model, {"epochs": 2, "batch_size": batch, "learning_rate": 1e-3,
                                   "optimizer": "sgd_momentum", "grad_clip": 1.0, "lr_schedule": "cosine"},
                     str(ds), str(tmp_path / "job"), device="cpu", log_interval=1e9)
    result = run(spec, [watch])
    monkeypatch.undo()
    assert result.status == "succeeded"
    epochs = [seg for seg in watch.segments if len(seg) > 1]
    assert len(epochs) == 2 and all(len(seg) > 30 for seg in epochs)  # many steps per epoch
    for seg in epochs:
        # Nothing between one step's end and the next; nothing at an epoch's start either.
        assert seg == [seg[0]] * len(seg), counter.where[seg[0]: seg[-1]][:5]
    # The train log at each epoch's end reads the running sums: one sync each (loss, accuracy).
    assert len(watch.log_costs) == 2 and all(cost <= 2 for cost in watch.log_costs), watch.log_costs
    # It is reported after the evaluation (one burst of events per epoch): the other reads
    # before it are the evaluation's, once per epoch.
    assert watch.other_reads <= {"evaluate", "classification_metrics", "_evaluate_lm"}, watch.other_reads
    assert counter.n > 0  # the counter does count (evaluation reads its metrics)


def test_a_zoo_classifier_that_does_not_learn_is_flagged_not_silently_succeeded(tmp_path):
    """Collapse is never a silent success (also for the zoo's models): a loss that never leaves
    its start, or validation predictions that are all one class, come back as warnings."""
    from tests import datagen
    from workers.datasets import ingest
    from workers.training import TrainSpec, run
    from workers.training.data import TensorData
    from workers.training.loop import _collapse

    ingest("tabular", datagen.table_csv(tmp_path / "t.csv", n=200), tmp_path / "ds", {})
    stalled = run(TrainSpec("mlp", {}, {"epochs": 3, "learning_rate": 1e-7, "optimizer": "sgd"},
                            str(tmp_path / "ds"), str(tmp_path / "job"), device="cpu", log_interval=0))
    assert stalled.status == "succeeded" and "loss_flat" in {w["code"] for w in stalled.warnings}
    learned = run(TrainSpec("mlp", {}, {"epochs": 10, "learning_rate": 1e-2}, str(tmp_path / "ds"),
                            str(tmp_path / "job2"), device="cpu", log_interval=0))
    assert learned.warnings == []

    data = TensorData({"task": "classification", "kind": "tabular", "classes": ["a", "b", "c"]})
    one_class = {"confusion": [[5, 0, 0], [7, 0, 0], [3, 0, 0]]}  # rows: truth; every prediction "a"
    [w] = _collapse(data, one_class, [])
    assert w["code"] == "one_class" and "'a'" in w["text"]
    assert _collapse(data, {"confusion": [[5, 1, 0], [0, 7, 0], [0, 0, 3]]}, []) == []
