"""Augmentation of image training batches (workers/training/augment.py) and torch.compile as a
training option: the rules, exactness of each transform, determinism under a seed, validation
left alone, the effect where augmentation is known to help, and compile's fall-back."""

from __future__ import annotations

import shutil

import pytest
import torch

from models_zoo.hparams import TrainConfig
from models_zoo.schema import validate
from tests import datagen
from workers.training.augment import Augmenter, Plan, plan_for
from workers.training.callbacks import Callback


def _info(channels=3, side=32, kind="image", task="classification"):
    return {"kind": kind, "task": task, "input_shape": [channels, side, side]}


def _tc(**kw):
    return validate(TrainConfig, kw)


def test_the_automatic_rule_crops_and_flips_colour_images_and_leaves_grayscale_alone():
    assert plan_for(_tc(), _info(3, 32)) == Plan(pad=4, flip=True)
    assert plan_for(_tc(), _info(3, 8)) == Plan(flip=True)  # too small to shift (a pixel is an eighth)
    assert plan_for(_tc(), _info(1, 28)) == Plan()  # digits, letters: centred, and a mirror changes them
    assert plan_for(_tc(augment="crop"), _info(1, 8)) == Plan(pad=1)  # asked for: done
    assert plan_for(_tc(augment="crop"), _info(1, 16)) == Plan(pad=2)
    assert plan_for(_tc(augment="off"), _info(3, 32)) == Plan()
    assert plan_for(_tc(augment="flip"), _info(1, 32)) == Plan(flip=True)
    assert plan_for(_tc(augment="crop", crop_padding=2, cutout=8, mixup_alpha=0.2), _info(1, 32)) == Plan(
        pad=2, cutout=8, mixup=0.2)
    assert plan_for(_tc(cutout=8), _info(1, 32)) == Plan(cutout=8)
    assert plan_for(_tc(mixup_alpha=0.2), _info(task="regression")).mixup == 0.0
    table = {"kind": "tabular", "task": "classification", "input_shape": [12]}
    assert not plan_for(_tc(), table).active


def test_settings_that_cannot_apply_are_refused_not_ignored():
    assert set(_tc(augment="crop", cutout=4).check_for_kind("tabular", "classification")) == {"augment", "cutout"}
    assert "mixup_alpha" in _tc(mixup_alpha=0.3).check_for_kind("image", "regression")
    assert _tc().check_for_kind("text", "classification") == {}  # auto is fine anywhere
    from models_zoo.hf import train_errors

    assert set(train_errors(_tc(augment="crop_flip", compile="on"))) == {"augment", "compile"}


def _coded_batch(n=64, c=2, h=8, w=8):
    """Every pixel value unique and non-zero, so each output pixel says where it came from."""
    return (torch.arange(n * c * h * w, dtype=torch.float32) + 1).view(n, c, h, w)


def _augmenter(plan, seed=0, epoch=0):
    aug = Augmenter(plan, seed, torch.device("cpu"))
    aug.start_epoch(epoch)
    return aug


def test_random_crop_is_a_padded_window_of_each_image():
    x, k = _coded_batch(), 2
    out, mix = _augmenter(Plan(pad=k))(x, torch.zeros(len(x), dtype=torch.long))
    assert mix is None and out.shape == x.shape
    padded = torch.nn.functional.pad(x, (k, k, k, k))
    offsets = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(2 * k + 1) for dx in range(2 * k + 1)
                if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert len(hits) == 1, f"image {i} is no window of its padded self"
        offsets.add(hits[0])
    assert len(offsets) > 10  # the offsets vary per image, over the whole range


def test_flip_mirrors_about_half_and_leaves_the_rest():
    x = _coded_batch(n=400)
    out, _ = _augmenter(Plan(flip=True))(x, None)
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(len(x))]
    assert all(f or torch.equal(out[i], x[i]) for i, f in enumerate(flipped))
    assert 140 < sum(flipped) < 260


def test_cutout_blanks_one_square_per_image_at_most():
    x = _coded_batch(n=50, h=16, w=16)
    out, _ = _augmenter(Plan(cutout=4))(x, None)
    for i in range(len(x)):
        zero = (out[i, 0] == 0)
        assert torch.equal(out[i][:, ~zero], x[i][:, ~zero])  # the rest is untouched
        rows, cols = zero.nonzero(as_tuple=True)
        assert 1 <= zero.sum() <= 16 and rows.max() - rows.min() < 4 and cols.max() - cols.min() < 4


def test_mixup_mixes_inputs_with_the_weight_it_returns():
    x = torch.randn(32, 3, 8, 8)
    out, (lam, perm) = _augmenter(Plan(mixup=0.4))(x, torch.zeros(32, dtype=torch.long))
    assert 0.0 <= lam <= 1.0 and sorted(perm.tolist()) == list(range(32))
    assert torch.allclose(out, lam * x + (1 - lam) * x[perm], atol=1e-6)


def test_the_same_seed_and_epoch_give_the_same_batches():
    x, plan = _coded_batch(), Plan(pad=2, flip=True, cutout=3, mixup=0.2)
    a, _ = _augmenter(plan, seed=5, epoch=3)(x, None)
    b, _ = _augmenter(plan, seed=5, epoch=3)(x, None)
    c, _ = _augmenter(plan, seed=5, epoch=4)(x, None)
    d, _ = _augmenter(plan, seed=6, epoch=3)(x, None)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)


@pytest.fixture(scope="module")
def glyphs(tmp_path_factory):
    from workers.datasets import ingest

    tmp = tmp_path_factory.mktemp("glyphs")
    ingest("image", datagen.shifted_glyphs_zip(tmp / "glyphs.zip"), tmp / "ds", {})
    return tmp / "ds"


def _train(ds, out, callbacks=(), **train):
    from workers.training import TrainSpec, run

    spec = TrainSpec("cnn", {}, {"epochs": 15, "batch_size": 16, **train}, str(ds), str(out), device="cpu")
    return run(spec, list(callbacks))


def test_augmentation_beats_no_augmentation_where_it_is_known_to_help(glyphs, tmp_path):
    """Centred glyphs to train on, shifted ones to validate on: only random crops teach the CNN
    the shifts (seen: 0.81–0.91 with augmentation against 0.55–0.61 without, seeds 0–2)."""
    with_aug = _train(glyphs, tmp_path / "aug", augment="crop")  # grayscale: crops are the user's choice
    without = _train(glyphs, tmp_path / "off")  # auto: nothing for grayscale
    assert with_aug.metrics["accuracy"] > without.metrics["accuracy"] + 0.15


def test_validation_and_test_rows_are_never_augmented(glyphs, tmp_path, monkeypatch):
    import workers.training.loop as loop
    from models_zoo.loading import load_model
    from workers.training.data import load_cache

    calls = []
    original = Augmenter.__call__

    def counting(self, x, y):
        calls.append(len(x))
        return original(self, x, y)

    monkeypatch.setattr(Augmenter, "__call__", counting)
    result = _train(glyphs, tmp_path / "job", epochs=2, cutout=6)
    assert sum(calls) == 2 * 96  # the training rows of each epoch, nothing else
    model, _ = load_model(tmp_path / "job" / "artifacts")  # the exported model, scored without augmentation
    metrics, _ = loop.evaluate(model, load_cache(glyphs, torch.device("cpu")), 1024)
    assert metrics["accuracy"] == pytest.approx(result.metrics["accuracy"], abs=1e-9)


class _Messages(Callback):
    def __init__(self):
        self.seen = []

    def on_message(self, state, control, level, text):
        self.seen.append((level, text))


def test_a_failing_torch_compile_falls_back_to_eager_and_says_so(glyphs, tmp_path, monkeypatch):
    def broken(model, **kw):
        def call(*a, **k):
            raise RuntimeError("backend exploded\nmore detail")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    said = _Messages()
    fallback = _train(glyphs, tmp_path / "fallback", [said], epochs=2, augment="off", compile="on")
    assert fallback.status == "succeeded"
    warnings = [t for level, t in said.seen if level == "warning"]
    assert warnings and "torch.compile failed" in warnings[0] and "backend exploded" in warnings[0]
    assert (tmp_path / "fallback" / "artifacts" / "model.safetensors").is_file()


def test_torch_compile_trains_and_reports_its_compile_time(tmp_path):
    pytest.importorskip("torch._inductor")
    from workers.datasets import ingest
    from workers.training import TrainSpec, run

    ingest("tabular", datagen.table_csv(tmp_path / "t.csv", n=120), tmp_path / "ds", {})
    said = _Messages()
    spec = TrainSpec("mlp", {"hidden_sizes": [16]}, {"epochs": 2, "batch_size": 32, "compile": "on"},
                     str(tmp_path / "ds"), str(tmp_path / "job"), device="cpu")
    result = run(spec, [said])
    assert result.status == "succeeded"
    texts = " ".join(t for _, t in said.seen)
    if shutil.which("cc") or shutil.which("gcc"):  # inductor's CPU backend needs a C compiler
        assert "torch.compile: the first step" in texts, texts
    else:
        assert "torch.compile failed" in texts, texts
    # Checkpoints and the exported model carry the plain module's names, not the wrapper's.
    ckpt = torch.load(sorted((tmp_path / "job" / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in ckpt["model"])
