"""The architecture registry and the config schema: pure Python, no torch, no Django DB."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import models_zoo
from models_zoo.hparams import OPTIMIZERS, TrainConfig
from models_zoo.mlp import Config as MLPConfig
from models_zoo.schema import ConfigError, describe, param, to_json, validate

ROOT = Path(__file__).resolve().parents[2]


def test_registry_imports_do_not_import_torch():
    # Every family's module, Config, form and checks, as the web process uses them.
    code = (
        "import models_zoo, models_zoo.mlp, models_zoo.hparams, models_zoo.schema, sys\n"
        "models_zoo.get('mlp').validate({'hidden_sizes': '8'})\n"
        "info = {'kind': 'image', 'task': 'classification', 'input_shape': [1, 8, 8], 'num_outputs': 2}\n"
        "for entry in models_zoo.REGISTRY.values():\n"
        "    entry.config_cls, entry.describe(), entry.validate({}), entry.module.validate_for\n"
        "    models_zoo.check_for_dataset(entry.name, {}, info)\n"
        "assert len(models_zoo.REGISTRY) >= 7\n"
        "leaked = sorted(m for m in ('torch', 'torchvision', 'safetensors') if m in sys.modules)\n"
        "assert not leaked, f'imported {leaked}'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_registry_lookup():
    entry = models_zoo.get("mlp")
    assert entry.name == "mlp"
    assert entry.config_cls is MLPConfig
    assert "tabular" in entry.kinds
    assert entry in models_zoo.entries_for("tabular")
    assert models_zoo.entries_for("no-such-kind") == []


def test_unknown_architecture_is_a_config_error():
    with pytest.raises(ConfigError) as exc:
        models_zoo.get("transformer-9000")
    assert "architecture" in exc.value.errors
    assert "transformer-9000" in exc.value.errors["architecture"]


# -- validate -------------------------------------------------------------------------------


def test_defaults_when_nothing_given():
    for data in (None, {}):
        cfg = validate(MLPConfig, data)
        assert cfg == MLPConfig()
        assert cfg.hidden_sizes == (64, 64)
        assert cfg.activation == "relu"
        assert cfg.dropout == 0.0
        assert cfg.norm == "none"
    tc = validate(TrainConfig, {})
    assert tc == TrainConfig()
    assert tc.optimizer == "adam" and tc.epochs == 20


def test_parses_form_strings():
    cfg = validate(MLPConfig, {"hidden_sizes": "64,32", "activation": "gelu", "dropout": "0.1", "norm": "layer"})
    assert cfg.hidden_sizes == (64, 32)
    assert isinstance(cfg.hidden_sizes, tuple)
    assert cfg.activation == "gelu"
    assert cfg.dropout == pytest.approx(0.1) and isinstance(cfg.dropout, float)
    assert cfg.norm == "layer"
    # Spaces and trailing commas are tolerated; empty means a linear model.
    assert validate(MLPConfig, {"hidden_sizes": " 128, 64 ,"}).hidden_sizes == (128, 64)
    assert validate(MLPConfig, {"hidden_sizes": ""}).hidden_sizes == ()
    # JSON lists work too.
    assert validate(MLPConfig, {"hidden_sizes": [16, 8]}).hidden_sizes == (16, 8)


def test_parses_numbers_from_strings_and_json():
    tc = validate(TrainConfig, {"epochs": "5", "batch_size": 32, "learning_rate": "0.01", "momentum": 0.5,
                                "weight_decay": "1e-4", "seed": "7", "optimizer": "sgd"})
    assert tc.epochs == 5 and isinstance(tc.epochs, int)
    assert tc.batch_size == 32
    assert tc.learning_rate == pytest.approx(0.01) and isinstance(tc.learning_rate, float)
    assert tc.momentum == 0.5
    assert tc.weight_decay == pytest.approx(1e-4)
    assert tc.seed == 7
    assert tc.optimizer == "sgd"
    assert validate(TrainConfig, {"epochs": 3.0}).epochs == 3  # an integral float is fine


@dataclasses.dataclass(frozen=True)
class _BoolConfig:
    flag: bool = param(False, label="Flag")


@pytest.mark.parametrize("raw", ["1", "true", "True", "on", "yes", " YES ", True])
def test_bool_true(raw):
    assert validate(_BoolConfig, {"flag": raw}).flag is True


@pytest.mark.parametrize("raw", ["0", "false", "off", "no", "", False])
def test_bool_false(raw):
    assert validate(_BoolConfig, {"flag": raw}).flag is False


def test_bool_garbage():
    with pytest.raises(ConfigError) as exc:
        validate(_BoolConfig, {"flag": "maybe"})
    assert exc.value.errors == {"flag": "must be true or false"}


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"epochs": 0}, "epochs", "at least 1"),
        ({"epochs": "10001"}, "epochs", "at most 10000"),
        ({"learning_rate": "0"}, "learning_rate", "at least"),
        ({"learning_rate": "11"}, "learning_rate", "at most 10"),
        ({"momentum": -0.1}, "momentum", "at least 0"),
        ({"momentum": "1.5"}, "momentum", "at most 0.999"),
        ({"seed": -1}, "seed", "at least 0"),
    ],
)
def test_min_max_errors(data, field, words):
    with pytest.raises(ConfigError) as exc:
        validate(TrainConfig, data)
    assert set(exc.value.errors) == {field}
    assert words in exc.value.errors[field]


def test_min_max_on_int_lists_and_dropout():
    with pytest.raises(ConfigError) as exc:
        validate(MLPConfig, {"hidden_sizes": "64,0"})
    assert "at least 1" in exc.value.errors["hidden_sizes"]
    with pytest.raises(ConfigError) as exc:
        validate(MLPConfig, {"hidden_sizes": "99999"})
    assert "at most 8192" in exc.value.errors["hidden_sizes"]
    with pytest.raises(ConfigError) as exc:
        validate(MLPConfig, {"hidden_sizes": ",".join(["4"] * 9)})
    assert "at most 8 values" in exc.value.errors["hidden_sizes"]
    with pytest.raises(ConfigError) as exc:
        validate(MLPConfig, {"dropout": "0.95"})
    assert "at most 0.9" in exc.value.errors["dropout"]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"epochs": "ten"}, "epochs", "must be a whole number"),
        ({"epochs": "2.5"}, "epochs", "must be a whole number"),
        ({"epochs": 2.5}, "epochs", "must be a whole number"),
        ({"epochs": True}, "epochs", "must be a whole number"),
        ({"learning_rate": "fast"}, "learning_rate", "must be a number"),
        ({"learning_rate": "nan"}, "learning_rate", "must be a finite number"),
        ({"learning_rate": "inf"}, "learning_rate", "must be a finite number"),
    ],
)
def test_type_errors(data, field, message):
    with pytest.raises(ConfigError) as exc:
        validate(TrainConfig, data)
    assert exc.value.errors == {field: message}


def test_int_list_garbage():
    with pytest.raises(ConfigError) as exc:
        validate(MLPConfig, {"hidden_sizes": "64,abc"})
    assert exc.value.errors["hidden_sizes"] == "must be a comma-separated list of whole numbers"


def test_unknown_field_is_an_error():
    with pytest.raises(ConfigError) as exc:
        validate(MLPConfig, {"hiden_sizes": "64", "activation": "relu"})
    assert exc.value.errors == {"hiden_sizes": "unknown setting"}
    assert "hiden_sizes" in str(exc.value)


def test_bad_choice_names_the_allowed_values():
    with pytest.raises(ConfigError) as exc:
        validate(MLPConfig, {"activation": "swish"})
    msg = exc.value.errors["activation"]
    for name in ("relu", "gelu", "tanh", "sigmoid"):
        assert name in msg
    with pytest.raises(ConfigError) as exc:
        validate(TrainConfig, {"optimizer": "lion"})
    for name, _ in OPTIMIZERS:
        assert name in exc.value.errors["optimizer"]


def test_all_errors_reported_together():
    with pytest.raises(ConfigError) as exc:
        validate(MLPConfig, {"activation": "swish", "dropout": "2", "bogus": 1})
    assert set(exc.value.errors) == {"activation", "dropout", "bogus"}


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_to_json_round_trips():
    cfg = validate(MLPConfig, {"hidden_sizes": "32,16", "activation": "tanh", "dropout": 0.25})
    data = to_json(cfg)
    assert data == {"hidden_sizes": [32, 16], "activation": "tanh", "dropout": 0.25, "norm": "none"}
    assert validate(MLPConfig, data) == cfg


# -- describe -------------------------------------------------------------------------------


def test_describe_shape():
    fields = describe(MLPConfig)
    assert [f["name"] for f in fields] == ["hidden_sizes", "activation", "dropout", "norm"]
    keys = {"name", "default", "label", "kind", "min", "max", "choices", "help", "max_items", "applies_when"}
    for f in fields:
        assert set(f) == keys
        assert isinstance(f["label"], str) and f["label"]
    by_name = {f["name"]: f for f in fields}
    assert by_name["hidden_sizes"]["kind"] == "ints"
    assert by_name["hidden_sizes"]["default"] == "64,64"  # form-ready string
    assert by_name["hidden_sizes"]["min"] == 1 and by_name["hidden_sizes"]["max"] == 8192
    assert by_name["activation"]["kind"] == "choice"
    assert [c[0] for c in by_name["activation"]["choices"]] == ["relu", "gelu", "tanh", "sigmoid"]
    assert by_name["activation"]["default"] == "relu"
    assert by_name["dropout"]["kind"] == "float"
    assert (by_name["dropout"]["min"], by_name["dropout"]["max"]) == (0.0, 0.9)
    assert by_name["norm"]["kind"] == "choice"
    assert models_zoo.get("mlp").describe() == fields


def test_describe_train_config_kinds():
    kinds = {f["name"]: f["kind"] for f in describe(TrainConfig)}
    assert kinds == {
        "epochs": "int",
        "batch_size": "int",
        "learning_rate": "float",
        "optimizer": "choice",
        "momentum": "float",
        "nesterov": "bool",
        "weight_decay": "float",
        "lr_schedule": "choice",
        "step_epochs": "int",
        "step_gamma": "float",
        "warmup_epochs": "float",
        "grad_clip": "float",
        "label_smoothing": "float",
        "regression_loss": "choice",
        "early_stopping_patience": "int",
        "monitor": "choice",
        "keep": "choice",
        "mixed_precision": "choice",
        "seed": "int",
        "augment": "choice",
        "crop_padding": "int",
        "cutout": "int",
        "mixup_alpha": "float",
        "compile": "choice",
        "gpus": "int",
        "nodes": "int",
    }
    # The form defaults validate back to the config defaults.
    form = {f["name"]: str(f["default"]) for f in describe(TrainConfig)}
    assert validate(TrainConfig, form) == TrainConfig()
    form = {f["name"]: str(f["default"]) for f in describe(MLPConfig)}
    assert validate(MLPConfig, form) == MLPConfig()
