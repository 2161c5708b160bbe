"""Which settings apply (models_zoo.schema `applies_when`): the rules, settle() and the display."""

from __future__ import annotations

import models_zoo
from models_zoo.hparams import TrainConfig
from models_zoo.schema import applicable_json, describe, inapplicable, settle, shown, validate

IMAGE_CLS = {"task": "classification", "kind": "image", "cuda": True}
TABLE_REG = {"task": "regression", "kind": "tabular", "cuda": False}


def test_momentum_only_for_sgd_momentum_and_rmsprop():
    for optimizer in ("sgd", "adam", "adamw"):
        skip = inapplicable(TrainConfig, {"optimizer": optimizer}, IMAGE_CLS)
        assert {"momentum", "nesterov"} <= set(skip), optimizer
        assert "Optimizer is SGD + momentum or RMSprop" in skip["momentum"]
    assert "momentum" not in inapplicable(TrainConfig, {"optimizer": "rmsprop"}, IMAGE_CLS)
    assert "nesterov" in inapplicable(TrainConfig, {"optimizer": "rmsprop"}, IMAGE_CLS)
    assert not {"momentum", "nesterov"} & set(inapplicable(TrainConfig, {"optimizer": "sgd_momentum"}, IMAGE_CLS))


def test_schedule_fields():
    skip = inapplicable(TrainConfig, {"lr_schedule": "constant"}, IMAGE_CLS)
    assert {"step_epochs", "step_gamma"} <= set(skip) and "warmup_epochs" not in skip
    assert not {"step_epochs", "step_gamma"} & set(inapplicable(TrainConfig, {"lr_schedule": "step"}, IMAGE_CLS))
    assert "warmup_epochs" in inapplicable(TrainConfig, {"lr_schedule": "onecycle"}, IMAGE_CLS)


def test_task_kind_and_device_context():
    skip = inapplicable(TrainConfig, {}, IMAGE_CLS)
    assert "regression_loss" in skip and "label_smoothing" not in skip and "mixup_alpha" not in skip
    assert "mixed_precision" not in skip
    skip = inapplicable(TrainConfig, {}, TABLE_REG)
    assert {"label_smoothing", "mixed_precision", "augment", "cutout", "crop_padding", "mixup_alpha"} <= set(skip)
    assert "regression_loss" not in skip
    assert "CUDA" in skip["mixed_precision"] and "this one holds tabular data" in skip["augment"]
    # Unknown context (no dataset chosen, no worker online) hides nothing of its own.
    assert not {"mixed_precision", "augment", "regression_loss"} & set(inapplicable(TrainConfig, {}, {}))
    # Crop padding needs a crop.
    assert "crop_padding" in inapplicable(TrainConfig, {"augment": "flip"}, IMAGE_CLS)


def test_lenet_shows_only_dropout():
    cnn = models_zoo.get("cnn").config_cls
    skip = inapplicable(cnn, {"preset": "lenet"})
    assert set(skip) == {"channels", "kernel_size", "pooling", "batch_norm", "hidden_size"}
    assert not inapplicable(cnn, {"preset": "custom"})


def test_describe_carries_the_rule():
    fields = {f["name"]: f for f in describe(TrainConfig)}
    assert fields["momentum"]["applies_when"] == {"optimizer": ["sgd_momentum", "rmsprop"]}
    assert fields["epochs"]["applies_when"] is None


def test_settle_drops_defaults_and_refuses_values_of_ones_own():
    data, errors = settle(TrainConfig, {"optimizer": "adam", "momentum": "0.9", "step_epochs": 10}, IMAGE_CLS)
    assert errors == {} and data == {"optimizer": "adam"}
    data, errors = settle(TrainConfig, {"optimizer": "adam", "momentum": "0.5"}, IMAGE_CLS)
    assert set(errors) == {"momentum"} and "leave it at 0.9" in errors["momentum"] and "(here: Adam)" in errors["momentum"]
    # A default filled in by someone else (not in `given`) goes silently, whatever its value.
    data, errors = settle(TrainConfig, {"lr_schedule": "onecycle", "warmup_epochs": 2.0}, IMAGE_CLS,
                          given={"lr_schedule"})
    assert errors == {} and data == {"lr_schedule": "onecycle"}
    # Lenient (an older job's stored settings): dropped, never refused.
    data, errors = settle(TrainConfig, {"optimizer": "adam", "momentum": 0.5}, IMAGE_CLS, strict=False)
    assert errors == {} and data == {"optimizer": "adam"}
    # A value that does not parse is left for validate() to name.
    data, errors = settle(TrainConfig, {"optimizer": "adam", "momentum": "lots"}, IMAGE_CLS)
    assert errors == {} and data["momentum"] == "lots"


def test_applicable_json_and_shown():
    tc = validate(TrainConfig, {"optimizer": "adamw", "lr_schedule": "cosine"})
    out = applicable_json(tc, TABLE_REG)
    assert "momentum" not in out and "step_gamma" not in out and "mixed_precision" not in out
    assert out["optimizer"] == "adamw" and "regression_loss" in out and "warmup_epochs" in out
    old = {"optimizer": "adam", "momentum": 0.9, "nesterov": False, "epochs": 3, "regression_loss": "mse"}
    assert shown(TrainConfig, old, {"task": "classification", "kind": "image"}) == {"optimizer": "adam", "epochs": 3}
    assert shown(None, old) == old
