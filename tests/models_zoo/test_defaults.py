"""Adaptive training defaults (models_zoo/defaults.py): simple rules from the dataset's size and
the architecture, each value one TrainConfig accepts, explicit settings always winning."""

from __future__ import annotations

import pytest

from models_zoo import defaults as adaptive
from models_zoo.hparams import TrainConfig
from models_zoo.schema import validate


def _info(rows: int, kind: str = "sequence", **extra) -> dict:
    return {"kind": kind, "task": "classification", "num_train": rows, "num_val": rows // 4,
            "input_shape": [40, 1], "num_outputs": 10, **extra}


def _values(arch: str, info: dict, model: dict | None = None) -> dict:
    return {k: v for k, (v, _) in adaptive.adaptive_defaults(arch, model or {}, info).items()}


def test_epochs_come_from_a_step_budget_clamped():
    v = _values("cnn1d", _info(4000))
    assert v["batch_size"] == 64
    assert v["epochs"] == 96  # ceil(6000 / 63 steps per epoch)
    assert _values("mlp", _info(1_000_000))["epochs"] == adaptive.MIN_EPOCHS
    assert _values("mlp", _info(150, kind="tabular"))["epochs"] == adaptive.MAX_EPOCHS


def test_small_datasets_get_a_smaller_batch():
    assert _values("mlp", _info(455, kind="tabular"))["batch_size"] == 16
    assert _values("mlp", _info(2000, kind="tabular"))["batch_size"] == 32
    assert _values("mlp", _info(3200, kind="tabular"))["batch_size"] == 64


def test_adamw_cosine_warmup_for_every_zoo_family_and_clipping_for_sequence_models():
    for arch in ("mlp", "cnn1d", "rnn", "cnn", "resnet", "transformer"):
        v = _values(arch, _info(4000))
        assert (v["optimizer"], v["lr_schedule"], v["weight_decay"]) == ("adamw", "cosine", adaptive.WEIGHT_DECAY)
        assert 0 < v["warmup_epochs"] <= 0.1 * v["epochs"]
    assert _values("rnn", _info(4000))["grad_clip"] == 1.0
    assert _values("rnn", _info(4000))["learning_rate"] == adaptive.RECURRENT_LR
    assert "grad_clip" not in _values("mlp", _info(4000))


def test_corpus_epochs_count_windows_of_the_block_size():
    info = {"kind": "corpus", "task": "lm", "num_train_tokens": 409_601, "vocab_size": 40}
    assert _values("gpt", info, {"block_size": 64})["epochs"] == 60  # 100 steps an epoch
    assert _values("gpt", info, {"block_size": 32})["epochs"] == 30


def test_every_value_is_a_valid_setting_and_every_setting_has_a_reason():
    for arch, info in [("mlp", _info(4000)), ("rnn", _info(10)), ("gpt", {"kind": "corpus", "task": "lm"}),
                       ("cnn", _info(60000, kind="image")), ("mlp", {})]:
        got = adaptive.adaptive_defaults(arch, {}, info)
        assert all(isinstance(reason, str) and reason for _, reason in got.values())
        validate(TrainConfig, {k: v for k, (v, _) in got.items()})  # raises if one is out of range


def test_explicit_settings_win_and_hf_gets_nothing():
    resolved, reasons = adaptive.resolve("mlp", {}, _info(4000), {"epochs": 3, "optimizer": "sgd"})
    assert resolved["epochs"] == 3 and resolved["optimizer"] == "sgd" and resolved["lr_schedule"] == "cosine"
    assert "epochs" not in reasons and "4,000 training rows" in adaptive.adaptive_defaults("mlp", {}, _info(4000))["epochs"][1]
    assert adaptive.adaptive_defaults("hf_text_classification", {}, _info(4000)) == {}


@pytest.mark.parametrize("arch", ["mlp", "rnn"])
def test_the_module_imports_no_torch(arch):
    import subprocess
    import sys

    code = ("import sys, models_zoo.defaults as d; d.adaptive_defaults(%r, {}, {}); "
            "sys.exit('torch' in sys.modules)") % arch
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_final_model_is_the_epoch_with_the_lowest_validation_loss_unless_the_user_says_otherwise():
    assert {k: _values("mlp", _info(455))[k] for k in ("keep", "monitor")} == {"keep": "best", "monitor": "loss"}
    assert _values("gpt", {"task": "lm", "kind": "corpus", "num_train_tokens": 100_000})["keep"] == "best"
    resolved, reasons = adaptive.resolve("mlp", {}, _info(455), {"monitor": "accuracy"})
    assert resolved["monitor"] == "accuracy" and resolved["keep"] == "best" and "accuracy" in reasons["keep"]
    resolved, reasons = adaptive.resolve("mlp", {}, _info(455), {"keep": "last"})
    assert resolved["keep"] == "last" and "keep" not in reasons and resolved["monitor"] == "loss"
