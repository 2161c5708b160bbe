from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import models_zoo
from models_zoo.hparams import TrainConfig
from models_zoo.mlp import Config
from models_zoo.schema import ConfigError, describe, validate

INFO = {"input_shape": [5], "num_outputs": 3}


def test_registry_and_configs_do_not_import_torch():
    code = ("import sys, models_zoo, models_zoo.mlp, models_zoo.hparams; "
            "models_zoo.get('mlp').describe(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_validate_parses_form_strings_and_json():
    c = validate(Config, {"hidden_sizes": "64, 32", "activation": "gelu", "dropout": "0.25"})
    assert c == Config(hidden_sizes=(64, 32), activation="gelu", dropout=0.25, norm="none")
    assert validate(Config, {"hidden_sizes": [8]}).hidden_sizes == (8,)
    assert validate(Config, {"hidden_sizes": ""}).hidden_sizes == ()
    assert validate(Config, None) == Config()
    assert validate(TrainConfig, {"epochs": 3.0}).epochs == 3


@pytest.mark.parametrize("data,field,message", [
    ({"dropout": "1.5"}, "dropout", "at most 0.9"),
    ({"dropout": "nan"}, "dropout", "finite"),
    ({"activation": "swish"}, "activation", "must be one of relu, gelu, tanh, sigmoid"),
    ({"hidden_sizes": "0"}, "hidden_sizes", "at least 1"),
    ({"hidden_sizes": "1,2,3,4,5,6,7,8,9"}, "hidden_sizes", "at most 8 values"),
    ({"width": 3}, "width", "unknown setting"),
])
def test_validate_rejects_bad_values_with_a_message(data, field, message):
    with pytest.raises(ConfigError) as exc:
        validate(Config, data)
    assert message in exc.value.errors[field]


@pytest.mark.parametrize("data,field", [({"epochs": "2.5"}, "epochs"), ({"epochs": True}, "epochs"),
                                        ({"learning_rate": 0}, "learning_rate"), ({"batch_size": -1}, "batch_size")])
def test_train_config_limits(data, field):
    with pytest.raises(ConfigError) as exc:
        validate(TrainConfig, data)
    assert field in exc.value.errors


def test_describe_drives_the_form():
    fields = {f["name"]: f for f in describe(Config)}
    assert fields["hidden_sizes"]["kind"] == "ints" and fields["hidden_sizes"]["default"] == "64,64"
    assert fields["activation"]["kind"] == "choice" and ("gelu", "GELU") in fields["activation"]["choices"]
    assert fields["dropout"]["kind"] == "float" and fields["dropout"]["max"] == 0.9


def test_unknown_architecture():
    with pytest.raises(ConfigError) as exc:
        models_zoo.get("resnet-9000")
    assert "unknown architecture" in exc.value.errors["architecture"]
    assert [e.name for e in models_zoo.entries_for("tabular")] == ["mlp"]


@pytest.mark.parametrize("config", [
    {},
    {"hidden_sizes": [], "activation": "relu"},
    {"hidden_sizes": [16, 8], "activation": "gelu", "norm": "batch", "dropout": 0.2},
    {"hidden_sizes": [16], "activation": "tanh", "norm": "layer"},
    {"hidden_sizes": [4, 4, 4], "activation": "sigmoid"},
])
def test_mlp_smoke_two_steps_save_reload_same_predictions(tmp_path, config):
    torch.manual_seed(0)
    model = models_zoo.build_model("mlp", config, INFO)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    again = models_zoo.build_model("mlp", config, INFO)
    again.load_state_dict(load_file(str(tmp_path / "m.safetensors")))
    again.eval()
    assert torch.equal(model(x), again(x))
