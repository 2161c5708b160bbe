"""Smoke test of the MLP family: builds, trains two steps on CPU, round-trips through safetensors."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import nn  # noqa: E402

import models_zoo  # noqa: E402
import models_zoo.loading  # noqa: E402
from models_zoo.schema import to_json  # noqa: E402

INFO_CLS = {"kind": "tabular", "task": "classification", "input_shape": [5], "num_outputs": 3}
INFO_REG = {"kind": "tabular", "task": "regression", "input_shape": [5], "num_outputs": 1}

CONFIGS = [
    {"hidden_sizes": "16,8", "activation": "relu"},
    {"hidden_sizes": "16", "activation": "gelu", "norm": "batch"},
    {"hidden_sizes": "12,12", "activation": "tanh", "norm": "layer", "dropout": "0.2"},
    {"hidden_sizes": "8", "activation": "sigmoid", "dropout": 0.5, "norm": "batch"},
    {"hidden_sizes": ""},  # a linear model
]


def _ids(cfg):
    return "-".join(f"{k}={v}" for k, v in cfg.items()) or "default"


def _step_twice(model: nn.Module, info: dict) -> list[float]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, *info["input_shape"], generator=gen)
    if info["task"] == "classification":
        y = torch.randint(0, info["num_outputs"], (16,), generator=gen)
    else:
        y = torch.randn(16, generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(2):
        out = model(x)
        assert out.shape == (16, info["num_outputs"])
        if info["task"] == "classification":
            loss = nn.functional.cross_entropy(out, y)
        else:
            loss = nn.functional.mse_loss(out.squeeze(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
@pytest.mark.parametrize("info", [INFO_CLS, INFO_REG], ids=["cls", "reg"])
def test_build_and_train_two_steps(cfg, info):
    torch.manual_seed(0)
    model = models_zoo.build_model("mlp", cfg, info)
    assert isinstance(model, nn.Module)
    losses = _step_twice(model, info)
    assert all(torch.isfinite(torch.tensor(losses)))
    params = list(model.parameters())
    assert params and all(torch.isfinite(p).all() for p in params)


def test_layers_follow_the_config():
    m = models_zoo.build_model("mlp", {"hidden_sizes": "16,8", "activation": "gelu", "norm": "layer",
                                       "dropout": 0.1}, INFO_CLS)
    kinds = [type(layer).__name__ for layer in m]
    assert kinds == ["Linear", "LayerNorm", "GELU", "Dropout", "Linear", "LayerNorm", "GELU", "Dropout", "Linear"]
    linears = [layer for layer in m if isinstance(layer, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(5, 16), (16, 8), (8, 3)]

    m = models_zoo.build_model("mlp", {"hidden_sizes": "4", "norm": "batch", "activation": "sigmoid"}, INFO_REG)
    assert [type(layer).__name__ for layer in m] == ["Linear", "BatchNorm1d", "Sigmoid", "Linear"]

    linear = models_zoo.build_model("mlp", {"hidden_sizes": ""}, INFO_CLS)
    assert len(linear) == 1 and isinstance(linear[0], nn.Linear)
    assert (linear[0].in_features, linear[0].out_features) == (5, 3)


def test_multi_dimensional_input_is_flattened():
    info = {"task": "classification", "input_shape": [2, 3], "num_outputs": 2}
    m = models_zoo.build_model("mlp", {"hidden_sizes": "4"}, info)
    assert isinstance(m[0], nn.Flatten)
    assert m(torch.randn(5, 2, 3)).shape == (5, 2)


def test_build_model_validates_dict_configs():
    with pytest.raises(models_zoo.ConfigError):
        models_zoo.build_model("mlp", {"activation": "swish"}, INFO_CLS)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_safetensors_round_trip_via_load_model(cfg, tmp_path):
    torch.manual_seed(1)
    model = models_zoo.build_model("mlp", cfg, INFO_CLS)
    _step_twice(model, INFO_CLS)  # non-trivial weights and batch-norm running stats
    model.eval()
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(x)

    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    # The config the loader expects: architecture + validated model config (JSON) + dataset info.
    config = {"architecture": "mlp", "model_config": to_json(models_zoo.get("mlp").validate(cfg)),
              "dataset": INFO_CLS}
    (tmp_path / "config.json").write_text(json.dumps(config))

    loaded, cfg_back = models_zoo.loading.load_model(tmp_path)
    assert cfg_back == config
    assert not loaded.training
    with torch.no_grad():
        got = loaded(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # Every tensor (including batch-norm buffers) survived.
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert set(stored) == set(model.state_dict())
