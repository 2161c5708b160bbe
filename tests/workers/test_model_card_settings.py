"""The model card lists only the settings that did something (models_zoo.schema applicability)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from models_zoo.hparams import TrainConfig  # noqa: E402
from models_zoo.schema import validate  # noqa: E402
from workers.training.artifacts import model_card  # noqa: E402
from workers.training.spec import TrainSpec  # noqa: E402

INFO = {"kind": "image", "task": "classification", "num_train": 8, "num_val": 2, "input_shape": [1, 16, 16]}


def _card(arch, model, train):
    spec = TrainSpec(arch, model, train, "/nonexistent", "/nonexistent")
    return model_card("t", spec, INFO, validate(TrainConfig, train), {"accuracy": 0.5}, ["torch x"], "use it")


def test_an_adam_lenet_card_has_no_momentum_nor_conv_settings():
    card = _card("cnn", {"preset": "lenet", "dropout": 0.1, "channels": [32, 64], "kernel_size": 3},
                 {"optimizer": "adam", "momentum": 0.9, "lr_schedule": "constant", "step_gamma": 0.1, "epochs": 2,
                  "regression_loss": "mse", "augment": "off"})
    training = card[card.index("## Training"):card.index("## Validation")]
    architecture = card[card.index("## Architecture"):card.index("## Training")]
    assert "- optimizer: adam" in training and "- epochs: 2" in training and "- augment: off" in training
    assert "momentum" not in training and "step_gamma" not in training and "regression_loss" not in training
    assert "- dropout: 0.1" in architecture and "channels" not in architecture and "kernel_size" not in architecture


def test_a_stored_config_without_mixed_precision_shows_none():
    card = _card("cnn", {}, {"optimizer": "sgd_momentum", "momentum": 0.8, "epochs": 1})
    training = card[card.index("## Training"):card.index("## Validation")]
    assert "- momentum: 0.8" in training and "nesterov" not in training and "mixed_precision" not in training
