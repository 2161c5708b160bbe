"""workers.hf without the stack: what is refused before loading (pickles, remote code, offline
Hub ids), the model ZIP checks, and resume from a Trainer checkpoint after a stop."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from tests import datagen, hfmodels
from workers.hf.modelzip import ModelZipError, extract_model_zip
from workers.hf.source import ModelSourceError, check_folder, resolve
from workers.training.callbacks import Callback
from workers.training.spec import TrainSpec


def _folder(tmp_path: Path, files: dict[str, bytes]) -> Path:
    folder = tmp_path / "m"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


CONFIG = json.dumps({"model_type": "gpt2"}).encode()


def test_pickle_only_checkpoints_and_remote_code_are_refused(tmp_path):
    with pytest.raises(ModelSourceError, match="only pickle weights .*pytorch_model.bin.*safetensors"):
        check_folder(_folder(tmp_path / "a", {"config.json": CONFIG, "pytorch_model.bin": b"x"}), "m")
    remote = json.dumps({"model_type": "x", "auto_map": {"AutoModel": "modeling_x.XModel"}}).encode()
    with pytest.raises(ModelSourceError, match="own Python code"):
        check_folder(_folder(tmp_path / "b", {"config.json": remote, "model.safetensors": b"x"}), "m")
    with pytest.raises(ModelSourceError, match="no config.json"):
        check_folder(_folder(tmp_path / "c", {"model.safetensors": b"x"}), "m")
    assert check_folder(_folder(tmp_path / "d", {"config.json": CONFIG, "model.safetensors": b"x"}), "m") is True
    assert check_folder(_folder(tmp_path / "e", {"config.json": CONFIG}), "m") is False  # random init


def test_offline_hub_id_is_a_clear_error_and_never_a_local_path(monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelSourceError, match="offline .*no cached copy"):
        resolve("someone/some-model", None)
    # "workers/hf" exists relative to the working directory: a Hub id is still not read from disk.
    assert Path("workers/hf").is_dir()
    with pytest.raises(ModelSourceError, match="offline"):
        resolve("workers/hf", None)
    with pytest.raises(ModelSourceError, match="not registered"):
        resolve("local:gone", None)


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    path.write_bytes(hfmodels.zip_bytes(entries))
    return path


def test_model_zip_checks(tmp_path):
    from safetensors.numpy import save_file
    import numpy as np

    save_file({"w": np.zeros(3, dtype=np.float32)}, str(tmp_path / "w.safetensors"))
    weights = (tmp_path / "w.safetensors").read_bytes()
    good = _zip(tmp_path / "good.zip", {"my-model/config.json": CONFIG, "my-model/model.safetensors": weights,
                                         "my-model/training_args.bin": b"pickle", "README.txt": b"beside it"})
    info = extract_model_zip(good, tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "model.safetensors"]
    assert info["model_type"] == "gpt2" and "training_args.bin" in info["skipped"]

    cases = {
        "slip": ({"../evil/config.json": CONFIG}, "'..'"),
        "absolute": ({"/etc/config.json": CONFIG}, "absolute"),
        "pickle-only": ({"config.json": CONFIG, "pytorch_model.bin": b"x"}, "no safetensors"),
        "no-config": ({"model.safetensors": weights}, "no config.json"),
        "remote-code": ({"config.json": json.dumps({"model_type": "x", "auto_map": {"a": "b"}}).encode(),
                         "model.safetensors": weights}, "own Python code"),
        "bomb": ({"config.json": CONFIG, "model.safetensors": b"\0" * (3 * 1024**2)}, "zip bomb"),
    }
    for name, (entries, message) in cases.items():
        with pytest.raises(ModelZipError, match=message):
            extract_model_zip(_zip(tmp_path / f"{name}.zip", entries), tmp_path / name)
        assert not (tmp_path / name).exists() and not (tmp_path / f"{name}.partial").exists(), name

    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info_ = zipfile.ZipInfo("config.json")
        info_.external_attr = 0o120777 << 16  # a symbolic link
        zf.writestr(info_, "/etc/passwd")
    with pytest.raises(ModelZipError, match="symbolic link"):
        extract_model_zip(link, tmp_path / "link")


class Recorder(Callback):
    def __init__(self, stop_in_epoch: int | None = None):
        self.stop_in_epoch = stop_in_epoch
        self.steps_per_epoch = 0
        self.hooks, self.messages, self.logs, self.samples = [], [], [], []

    def on_train_begin(self, state, control):
        self.hooks.append("on_train_begin")

    def on_step_end(self, state, control):
        self.steps_per_epoch = state.steps_per_epoch
        if self.stop_in_epoch is not None and state.step >= state.steps_per_epoch * (self.stop_in_epoch - 1) + 2:
            control.should_stop = True

    def on_log(self, state, control, split, values):
        self.logs.append((split, state.step, values))

    def on_samples(self, state, control, samples):
        self.samples.append(samples)

    def on_message(self, state, control, level, text):
        self.messages.append(text)

    def on_epoch_end(self, state, control):
        self.hooks.append("on_epoch_end")

    def on_train_end(self, state, control, status):
        self.hooks.append(f"on_train_end:{status}")


def test_causal_lm_stops_keeps_its_checkpoint_and_resumes(tmp_path):
    from workers.datasets import ingest
    from workers.hf import run
    from workers.hf.runner import latest_checkpoint

    corpus = datagen.repetitive_corpus(tmp_path / "c.txt", repeats=40)
    ingest("corpus", corpus, tmp_path / "ds", {})
    model = hfmodels.tiny_gpt2(tmp_path / "gpt", corpus.read_text())
    spec = TrainSpec("hf_causal_lm", {"model": "local:gpt", "block_size": 32, "max_new_tokens": 8},
                     {"epochs": 3, "batch_size": 16, "learning_rate": 3e-3}, str(tmp_path / "ds"),
                     str(tmp_path / "job"), extra={"model_path": str(model)})
    first = Recorder(stop_in_epoch=2)  # stop two steps into the second epoch
    result = run(spec, [first])
    assert result.status == "cancelled" and result.artifacts == []
    assert first.hooks[0] == "on_train_begin" and first.hooks[-1] == "on_train_end:cancelled"
    ckpt = latest_checkpoint(tmp_path / "job" / "hf-checkpoints")
    per_epoch = first.steps_per_epoch
    assert ckpt is not None and ckpt.name == f"checkpoint-{per_epoch}"  # the last epoch's, not the cut one
    assert not any(split == "val" and step > per_epoch for split, step, _ in first.logs)
    # A checkpoint torn by a crash while saving is dropped, not resumed from.
    torn = ckpt.with_name(f"checkpoint-{2 * per_epoch}")
    shutil.copytree(ckpt, torn)
    (torn / ".trainyard-complete").unlink()

    second = Recorder()
    result = run(spec, [second])
    assert result.status == "succeeded" and "model.zip" in result.artifacts
    assert any(f"resumed from the checkpoint after epoch 1 (step {per_epoch})" in m for m in second.messages)
    train_steps = [s for split, s, _ in second.logs if split == "train"]
    assert train_steps and min(train_steps) > per_epoch  # continues after the checkpoint
    val = [v["loss"] for split, _, v in first.logs + second.logs if split == "val"]
    assert len(val) == 3 and val[-1] < val[0]
    assert second.samples[-1] and second.samples[-1][0]["generated"]


def test_unsupported_training_settings_are_refused():
    from models_zoo.hf import train_errors
    from models_zoo.hparams import TrainConfig

    errors = train_errors(TrainConfig(optimizer="rmsprop", lr_schedule="onecycle", early_stopping_patience=3))
    assert set(errors) == {"optimizer", "lr_schedule", "early_stopping_patience"}
    assert train_errors(TrainConfig()) == {}
