"""Every architecture family on every dataset kind it accepts: builds, trains two steps on CPU,
round-trips through safetensors; plus the per-dataset checks run before a job is queued."""

from __future__ import annotations

import dataclasses
import json

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import models_zoo  # noqa: E402
import models_zoo.loading  # noqa: E402
from models_zoo.schema import ConfigError, to_json, validate  # noqa: E402

VOCAB = 30
INFOS = {
    ("tabular", "classification"): {"kind": "tabular", "task": "classification", "input_shape": [5], "num_outputs": 3},
    ("tabular", "regression"): {"kind": "tabular", "task": "regression", "input_shape": [5], "num_outputs": 1},
    ("image", "classification"): {"kind": "image", "task": "classification", "input_shape": [1, 12, 12],
                                  "num_outputs": 4},
    ("text", "classification"): {"kind": "text", "task": "classification", "input_shape": [10], "vocab_size": VOCAB,
                                 "max_len": 10, "num_outputs": 2},
    ("sequence", "classification"): {"kind": "sequence", "task": "classification", "input_shape": [16, 1],
                                     "num_outputs": 3},
    ("sequence", "regression"): {"kind": "sequence", "task": "regression", "input_shape": [16, 1], "num_outputs": 1},
    ("corpus", "lm"): {"kind": "corpus", "task": "lm", "vocab_size": VOCAB, "num_outputs": VOCAB},
}

# Small configs per family ({} = the form defaults); every registry entry must have some.
CONFIGS = {
    "mlp": [{}, {"hidden_sizes": "8", "norm": "batch", "dropout": 0.1}],
    "cnn": [
        {},
        {"channels": "4", "kernel_size": 5, "pooling": "avg", "batch_norm": False, "dropout": 0.2, "hidden_size": 0},
        {"channels": "4,4,4", "pooling": "none", "hidden_size": 8},
        {"preset": "lenet", "dropout": 0.1},
    ],
    "resnet": [{}, {"depth": "34", "small_input": "on"}],
    "cnn1d": [{}, {"channels": "4,8,8", "kernel_size": 3, "pooling": "avg", "global_pooling": "max",
                   "batch_norm": False, "dropout": 0.1}],
    "rnn": [
        {"hidden_size": 8, "embedding_dim": 8},
        {"cell": "gru", "hidden_size": 8, "embedding_dim": 8, "num_layers": 2, "bidirectional": True,
         "dropout": 0.1, "readout": "mean"},
        {"cell": "rnn", "hidden_size": 8, "embedding_dim": 8, "bidirectional": True},
    ],
    "transformer": [
        {},
        {"layers": 1, "heads": 2, "width": 16, "ffn_size": 32, "positional": "learned", "pooling": "cls"},
        {"layers": 1, "heads": 1, "width": 9, "ffn_size": 8, "dropout": 0.0},  # odd width: sinusoidal still fits
    ],
    "gpt": [{}, {"layers": 1, "heads": 2, "width": 16, "block_size": 8, "dropout": 0.1}],
}

CASES = [
    pytest.param(name, info, cfg, id=f"{name}-{kind}-{task}-{i}")
    for name, entry in models_zoo.REGISTRY.items()
    if not name.startswith("hf_")  # pretrained Hugging Face models: tests/workers/test_hf*.py
    for (kind, task), info in INFOS.items()
    if kind in entry.kinds and task in entry.tasks
    for i, cfg in enumerate(CONFIGS[name])
]


def _batch(info: dict, n: int = 8, seed: int = 0):
    """Inputs and targets shaped like the training loop's batches for this kind."""
    g = torch.Generator().manual_seed(seed)
    if info["kind"] == "corpus":
        window = torch.randint(0, VOCAB, (n, 9), generator=g)
        return window[:, :-1], window[:, 1:]
    if info["kind"] == "text":
        length = info["input_shape"][0]
        x = torch.randint(1, VOCAB, (n, length), generator=g)
        for i in range(n):  # right padding with 0, a different length per row
            x[i, (i * 3) % length + 1 :] = 0
        x[-1] = 0  # an empty text must not give NaN
    else:
        x = torch.randn(n, *info["input_shape"], generator=g)
    if info["task"] == "classification":
        y = torch.randint(0, info["num_outputs"], (n,), generator=g)
    else:
        y = torch.randn(n, generator=g)
    return x, y


def _loss(info: dict, out, y):
    if info["task"] == "lm":
        assert out.shape == (*y.shape, info["vocab_size"])
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    assert out.shape == (len(y), info["num_outputs"])
    if info["task"] == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out.squeeze(-1), y)


def test_every_entry_has_smoke_configs():
    zoo = {name for name in models_zoo.REGISTRY if not name.startswith("hf_")}
    assert set(CONFIGS) == zoo
    for entry in models_zoo.REGISTRY.values():
        assert entry.module.KINDS == entry.kinds, entry.name
        assert any(kind in entry.kinds and task in entry.tasks for kind, task in INFOS), entry.name


@pytest.mark.parametrize(("name", "info", "cfg"), CASES)
def test_trains_two_steps_and_round_trips_through_safetensors(name, info, cfg, tmp_path):
    torch.manual_seed(0)
    assert models_zoo.check_for_dataset(name, cfg, info) == {}
    model = models_zoo.build_model(name, cfg, info)
    assert isinstance(model, nn.Module)
    x, y = _batch(info)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        loss = _loss(info, model(x), y)
        assert torch.isfinite(loss), loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items()), "nothing was trained"

    model.eval()
    x_eval, _ = _batch(info, n=5, seed=1)
    with torch.no_grad():
        expected = model(x_eval)
    assert torch.isfinite(expected).all()
    # What the training loop exports, and what `load_model` reads back.
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(tmp_path / "model.safetensors"))
    config = {"architecture": name, "model_config": to_json(models_zoo.get(name).validate(cfg)), "dataset": info}
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded, _ = models_zoo.loading.load_model(tmp_path)
    with torch.no_grad():
        got = loaded(x_eval)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


# -- the form: bounds and defaults --------------------------------------------------------------


@pytest.mark.parametrize("name", list(models_zoo.REGISTRY))
def test_every_numeric_setting_has_bounds_and_defaults_round_trip(name):
    entry = models_zoo.get(name)
    fields = entry.describe()
    for f in fields:
        if f["kind"] in ("int", "float", "ints"):
            assert f["min"] is not None and f["max"] is not None, (name, f["name"])
    form = {f["name"]: str(f["default"]) for f in fields}
    assert entry.validate(form) == entry.config_cls()


# -- checks before a job is queued ---------------------------------------------------------------


def _info(kind, task, **changes):
    return {**INFOS[(kind, task)], **changes}


@pytest.mark.parametrize("name", ["transformer", "gpt"])
def test_heads_must_divide_the_width(name):
    entry = models_zoo.get(name)
    info = next(i for (k, t), i in INFOS.items() if k in entry.kinds and t in entry.tasks)
    with pytest.raises(ConfigError) as exc:
        entry.validate({"heads": 3, "width": 16})
    assert "must divide the width (16)" in exc.value.errors["heads"]
    assert "heads" in models_zoo.check_for_dataset(name, {"heads": 3, "width": 16}, info)
    # A Config built directly (not through validate) is caught by validate_for.
    bad = dataclasses.replace(entry.config_cls(), heads=3, width=16)
    assert "heads" in entry.module.validate_for(bad, info)
    assert entry.module.validate_for(dataclasses.replace(bad, heads=4), info) == {}


def test_cnn_rejects_images_too_small_for_the_pooling():
    tiny = _info("image", "classification", input_shape=[3, 6, 6])
    errors = models_zoo.check_for_dataset("cnn", {"channels": "8,8,8"}, tiny)
    assert set(errors) == {"channels"}
    assert "at least 8×8" in errors["channels"] and "6×6" in errors["channels"]
    assert models_zoo.check_for_dataset("cnn", {"channels": "8,8"}, tiny) == {}
    assert models_zoo.check_for_dataset("cnn", {"channels": "8,8,8", "pooling": "none"}, tiny) == {}
    # LeNet-5 has fixed pooling and unpadded convs.
    errors = models_zoo.check_for_dataset("cnn", {"preset": "lenet"}, _info("image", "classification",
                                                                           input_shape=[1, 8, 8]))
    assert "12×12" in errors["preset"]
    # The defaults fit the 8×8 digits of the integration test.
    assert models_zoo.check_for_dataset("cnn", {}, _info("image", "classification", input_shape=[1, 8, 8])) == {}
    with pytest.raises(ConfigError) as exc:
        models_zoo.get("cnn").validate({"kernel_size": 4})
    assert "odd" in exc.value.errors["kernel_size"]


def test_cnn1d_rejects_sequences_too_short_for_the_pooling():
    short = _info("sequence", "classification", input_shape=[4, 1])
    errors = models_zoo.check_for_dataset("cnn1d", {"channels": "4,4,4"}, short)
    assert "at least 8 steps" in errors["channels"]
    assert models_zoo.check_for_dataset("cnn1d", {"channels": "4,4"}, short) == {}


def test_resnet_stem_follows_the_image_size():
    small = _info("image", "classification", input_shape=[1, 16, 16])
    large = _info("image", "classification", input_shape=[3, 64, 64])
    errors = models_zoo.check_for_dataset("resnet", {"small_input": "off"}, small)
    assert "at least 32×32" in errors["small_input"]
    m = models_zoo.build_model("resnet", {}, small)  # auto: the small stem
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1) and m.conv1.in_channels == 1
    assert isinstance(m.maxpool, nn.Identity)
    m = models_zoo.build_model("resnet", {}, large)  # auto: the standard stem
    assert m.conv1.kernel_size == (7, 7) and m.conv1.stride == (2, 2) and m.conv1.in_channels == 3
    assert isinstance(m.maxpool, nn.MaxPool2d)
    assert m.fc.out_features == 4
    m = models_zoo.build_model("resnet", {"small_input": "off"}, {**large, "input_shape": [1, 64, 64]})
    assert m.conv1.kernel_size == (7, 7) and m.conv1.in_channels == 1


@pytest.mark.parametrize("name", list(models_zoo.REGISTRY))
def test_wrong_dataset_kind_is_rejected(name):
    entry = models_zoo.get(name)
    for (kind, task), info in INFOS.items():
        if kind in entry.kinds:
            continue
        errors = models_zoo.check_for_dataset(name, {}, info)
        assert set(errors) == {"architecture"}, (kind, errors)
        assert entry.label in errors["architecture"] and kind in errors["architecture"]
        # The family module refuses it on its own too.
        assert "architecture" in entry.module.validate_for(entry.config_cls(), info)


def test_wrong_task_and_bad_input_are_reported():
    text = INFOS[("text", "classification")]
    corpus = INFOS[("corpus", "lm")]
    assert "does not do classification" in models_zoo.check_for_dataset("gpt", {}, {**text, "kind": "corpus"})[
        "architecture"]
    assert "does not do lm" in models_zoo.check_for_dataset("mlp", {}, {**corpus, "kind": "tabular"})["architecture"]
    assert models_zoo.check_for_dataset("rnn", {"cell": "transformer"}, text) == {
        "cell": "must be one of lstm, gru, rnn"}
    assert "architecture" in models_zoo.check_for_dataset("no-such-model", {}, text)


# -- GPT ----------------------------------------------------------------------------------------


def test_gpt_generate_shape_and_block_size():
    torch.manual_seed(0)
    info = INFOS[("corpus", "lm")]
    model = models_zoo.build_model("gpt", {"layers": 1, "heads": 2, "width": 16, "block_size": 8}, info)
    model.eval()
    seen = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
    prompt = torch.randint(0, VOCAB, (2, 11))  # longer than the block
    out = model.generate(prompt, 6, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 17) and out.dtype == torch.long
    assert torch.equal(out[:, :11], prompt)
    assert ((out >= 0) & (out < VOCAB)).all()
    assert seen == [8] * 6  # the context is cropped to the block size
    again = model.generate(prompt, 6, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, out)  # the generator makes it reproducible
    greedy = model.generate(prompt[:, :3], 4, temperature=0)
    assert torch.equal(greedy, model.generate(prompt[:, :3], 4, top_k=1))
    with pytest.raises(ValueError, match="block size"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_gpt_ties_input_and_output_embeddings():
    model = models_zoo.build_model("gpt", {"layers": 1, "heads": 2, "width": 16, "block_size": 8},
                                   INFOS[("corpus", "lm")])
    assert not any(p.shape == (VOCAB, 16) for name, p in model.named_parameters() if name != "tok.weight")
    x = torch.randint(0, VOCAB, (1, 4))
    model(x).sum().backward()
    assert model.tok.weight.grad is not None


def test_gpt_attention_is_causal():
    torch.manual_seed(0)
    model = models_zoo.build_model("gpt", {"layers": 2, "heads": 2, "width": 16, "block_size": 8},
                                   INFOS[("corpus", "lm")]).eval()
    x = torch.randint(0, VOCAB, (1, 8))
    y = x.clone()
    y[0, 5:] = (y[0, 5:] + 1) % VOCAB
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:, :5], model(y)[:, :5])


# -- text padding --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "cfg"), [
    ("rnn", {"hidden_size": 8, "embedding_dim": 8, "bidirectional": True}),
    ("rnn", {"cell": "gru", "hidden_size": 8, "embedding_dim": 8, "readout": "mean"}),
    ("transformer", {"layers": 1, "heads": 2, "width": 16, "ffn_size": 16}),
    ("transformer", {"layers": 1, "heads": 2, "width": 16, "ffn_size": 16, "pooling": "cls"}),
])
def test_text_models_ignore_padding(name, cfg):
    torch.manual_seed(0)
    info = INFOS[("text", "classification")]
    model = models_zoo.build_model(name, cfg, info).eval()
    x = torch.tensor([[5, 6, 7, 0, 0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        padded = model(x)
        trimmed = model(x[:, :3])
    # The same text with fewer padding columns: the answer must not change.
    torch.testing.assert_close(padded, trimmed, rtol=1e-5, atol=1e-6)


# -- ResNet pretrained weights -------------------------------------------------------------------


def test_resnet_pretrained_path_missing_is_a_clear_error(tmp_path):
    info = INFOS[("image", "classification")]
    missing = str(tmp_path / "nope.pth")
    errors = models_zoo.check_for_dataset("resnet", {"pretrained_path": missing}, info)
    assert "no file at" in errors["pretrained_path"] and "never downloaded" in errors["pretrained_path"]
    with pytest.raises(ConfigError) as exc:
        models_zoo.build_model("resnet", {"pretrained_path": missing}, info)
    assert "no file at" in exc.value.errors["pretrained_path"]
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(ConfigError) as exc:
        models_zoo.build_model("resnet", {"pretrained_path": str(garbage)}, info)
    assert "not a readable PyTorch state dict" in exc.value.errors["pretrained_path"]


def test_resnet_loads_a_local_torchvision_state_dict(tmp_path):
    import torchvision

    torch.manual_seed(0)
    source = torchvision.models.resnet18(weights=None)  # 1000 classes, 3-channel 7×7 stem
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    src = source.state_dict()

    rgb = _info("image", "classification", input_shape=[3, 32, 32])
    model = models_zoo.build_model("resnet", {"pretrained_path": str(path), "small_input": "off"}, rgb)
    for k, v in model.state_dict().items():
        if k.startswith("fc."):
            assert v.shape[0] == 4
        else:
            assert torch.equal(v, src[k]), k

    grey = models_zoo.build_model("resnet", {"pretrained_path": str(path), "small_input": "off"},
                                  {**rgb, "input_shape": [1, 32, 32]})
    torch.testing.assert_close(grey.conv1.weight, src["conv1.weight"].sum(1, keepdim=True))

    small = models_zoo.build_model("resnet", {"pretrained_path": str(path)}, {**rgb, "input_shape": [1, 12, 12]})
    assert small.conv1.kernel_size == (3, 3)  # the 7×7 stem cannot be used; the rest is
    assert torch.equal(small.layer4[1].conv2.weight, src["layer4.1.conv2.weight"])

    # Older torchvision files have no num_batches_tracked counters.
    legacy = tmp_path / "legacy.pth"
    torch.save({k: v for k, v in src.items() if not k.endswith("num_batches_tracked")}, legacy)
    models_zoo.build_model("resnet", {"pretrained_path": str(legacy)}, rgb)

    with pytest.raises(ConfigError) as exc:
        models_zoo.build_model("resnet", {"pretrained_path": str(path), "depth": "34"}, rgb)
    assert "not a torchvision ResNet-34 state dict" in exc.value.errors["pretrained_path"]

    # A model trained from it reloads from its own weights even after the file is gone.
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    cfg = {"architecture": "resnet", "dataset": rgb,
           "model_config": to_json(validate(models_zoo.get("resnet").config_cls,
                                            {"pretrained_path": str(path), "small_input": "off"}))}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    path.unlink()
    loaded, _ = models_zoo.loading.load_model(tmp_path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)

