"""Parameter-efficient fine-tuning (workers.hf with method = lora / qlora) on CPU, offline: a tiny
GPT-2 and the real pretrained MiniLM. Only the adapters (and a classifier's head) move, the loss
falls, the downloaded adapter reloads on its base with PeftModel.from_pretrained and predicts
what the worker predicted, the merged model predicts what the adapter model does, a stopped run
resumes from its adapter checkpoint; QLoRA is refused on CPU with its reason; the fine-tuning
defaults."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests import datagen, hfmodels
from tests.workers.test_hf import Recorder
from workers.training.spec import TrainSpec


def _unzip(job_dir: Path, out: Path) -> set[str]:
    with zipfile.ZipFile(job_dir / "artifacts" / "model.zip") as zf:
        names = set(zf.namelist())
        assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names), names  # no pickles
        zf.extractall(out)
    return names


def _spy_export(monkeypatch, batch_of):
    """What the trained model (PEFT-wrapped) predicts in the worker just before the export, and
    its parameters then."""
    import torch

    from workers.hf import runner

    seen: dict = {}
    real = runner.export

    def spy(output_dir, trainer, processor, *args):
        model = trainer.model.eval()
        seen["batch"] = batch_of(processor)
        with torch.no_grad():
            seen["logits"] = model(**seen["batch"]).logits.clone()
        seen["params"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        seen["trainable"] = {n for n, p in model.named_parameters() if p.requires_grad}
        return real(output_dir, trainer, processor, *args)

    monkeypatch.setattr(runner, "export", spy)
    return seen


def _base_key(name: str) -> str:
    """A PEFT parameter's name in the base checkpoint (base_model.model.X.base_layer.weight → X.weight)."""
    name = name.removeprefix("base_model.model.")
    return name.replace(".base_layer.", ".")


def _assert_only_adapters_and_head_moved(seen: dict, base_file: Path, heads: tuple[str, ...] = ()):
    import torch
    from safetensors.torch import load_file

    initial = load_file(str(base_file))
    moved, frozen = set(), 0
    for name, value in seen["params"].items():
        if "lora_" in name or ".modules_to_save." in name:
            assert name in seen["trainable"], name
            continue
        assert name not in seen["trainable"], name
        if ".original_module." in name:  # the head as initialised (its trained copy is modules_to_save)
            continue
        key = _base_key(name)
        if key not in initial:  # an encoder's checkpoint (MiniLM's BertModel) has no "bert." prefix
            key = key.split(".", 1)[1]
        assert key in initial, (name, key)
        frozen += 1
        if not torch.equal(initial[key], value):
            moved.add(key)
    assert frozen and not moved, moved  # every base weight is exactly the pretrained one
    trainable = seen["trainable"]
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    for head in heads:
        assert any(f"{head}.modules_to_save." in n for n in trainable), (head, trainable)


def _lm_spec(tmp_path: Path, model_config: dict, train: dict | None = None) -> tuple[TrainSpec, Path, Path]:
    from workers.datasets import ingest

    corpus = datagen.repetitive_corpus(tmp_path / "c.txt", repeats=40)
    ingest("corpus", corpus, tmp_path / "ds", {})
    folder = hfmodels.tiny_gpt2(tmp_path / "gpt", corpus.read_text())
    spec = TrainSpec("hf_causal_lm", {"model": "local:gpt", "block_size": 32, "max_new_tokens": 8, **model_config},
                     {"epochs": 3, "batch_size": 16, "learning_rate": 3e-2, **(train or {})}, str(tmp_path / "ds"),
                     str(tmp_path / "job"), device="cpu", log_interval=0.0, extra={"model_path": str(folder)})
    return spec, tmp_path / "ds", folder


def test_lora_on_tiny_gpt2_trains_the_adapters_only_and_the_download_predicts_the_same(tmp_path, monkeypatch):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, default_data_collator

    from workers.hf import data as hfdata
    from workers.hf import run

    spec, ds, folder = _lm_spec(tmp_path, {"method": "lora", "lora_rank": 4, "lora_alpha": 8, "lora_dropout": 0.0,
                                           "merge_adapter": True})

    def batch_of(tokenizer):
        _, val, _ = hfdata.causal_lm(ds, hfdata.load_info(ds), tokenizer, 32)
        return {"input_ids": default_data_collator([val[i] for i in range(min(8, len(val)))])["input_ids"]}

    seen = _spy_export(monkeypatch, batch_of)
    rec = Recorder()
    result = run(spec, [rec])
    assert result.status == "succeeded"
    assert any(m.startswith("LORA (rank 4, alpha 8, targets all-linear) on a frozen base: training ")
               for m in rec.messages), rec.messages
    _assert_only_adapters_and_head_moved(seen, folder / "model.safetensors")
    val = [v["loss"] for split, _, v in rec.logs if split == "val"]
    assert len(val) == 3 and val[-1] < val[0] - 0.05, val  # a random base: adapters alone learn slowly

    names = _unzip(tmp_path / "job", tmp_path / "out")
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/README.md",
            "model/config.json", "model/model.safetensors"} <= names, names
    adapter_cfg = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == "local:gpt" and adapter_cfg["r"] == 4
    card = (tmp_path / "job" / "artifacts" / "MODEL_CARD.md").read_text()
    assert "hf_causal_lm from local:gpt, method lora" in card and "PeftModel.from_pretrained" in card

    base = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    adapted = PeftModel.from_pretrained(base, tmp_path / "out" / "adapter").eval()
    with torch.no_grad():
        logits = adapted(**seen["batch"]).logits
    torch.testing.assert_close(logits, seen["logits"], rtol=0, atol=1e-4)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model", use_safetensors=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(**seen["batch"]).logits, logits, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def sentiment_ds(tmp_path_factory) -> Path:
    from workers.datasets import ingest

    tmp = tmp_path_factory.mktemp("sentiment")
    ingest("text", datagen.sentiment_csv(tmp / "reviews.csv", n=80), tmp / "ds", {})
    return tmp / "ds"


def test_lora_on_minilm_trains_adapters_and_head_and_the_adapter_reloads(sentiment_ds, tmp_path, monkeypatch):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    from workers.hf import data as hfdata
    from workers.hf import run

    minilm = hfmodels.minilm_dir()
    spec = TrainSpec("hf_text_classification",
                     {"model": "local:minilm", "max_length": 32, "method": "lora", "lora_dropout": 0.0,
                      "merge_adapter": True},
                     {"epochs": 3, "batch_size": 16, "learning_rate": 2e-3, "seed": 1}, str(sentiment_ds),
                     str(tmp_path / "job"), device="cpu", log_interval=0.0, extra={"model_path": str(minilm)})

    def batch_of(tokenizer):
        _, val, _ = hfdata.text_classification(sentiment_ds, hfdata.load_info(sentiment_ds), tokenizer, 32)
        batch = dict(DataCollatorWithPadding(tokenizer)([val[i] for i in range(len(val))]))
        batch.pop("labels")
        return batch

    seen = _spy_export(monkeypatch, batch_of)
    rec = Recorder()
    result = run(spec, [rec])
    assert result.status == "succeeded"
    _assert_only_adapters_and_head_moved(seen, minilm / "model.safetensors", heads=("classifier",))
    val = [v["loss"] for split, _, v in rec.logs if split == "val"]
    assert len(val) == 3 and val[-1] < val[0], val

    names = _unzip(tmp_path / "job", tmp_path / "out")
    assert {"adapter/adapter_model.safetensors", "model/model.safetensors"} <= names, names
    classes = [str(c) for c in hfdata.load_info(sentiment_ds)["classes"]]
    kwargs = {"num_labels": len(classes), "id2label": dict(enumerate(classes)),
              "label2id": {c: i for i, c in enumerate(classes)}}
    base = AutoModelForSequenceClassification.from_pretrained(minilm, use_safetensors=True, **kwargs)
    adapted = PeftModel.from_pretrained(base, tmp_path / "out" / "adapter").eval()
    with torch.no_grad():
        logits = adapted(**seen["batch"]).logits
    torch.testing.assert_close(logits, seen["logits"], rtol=0, atol=1e-4)
    # The runner's own predictions (val_predictions.json, the final evaluation) are the reloaded model's.
    stored = json.loads((tmp_path / "job" / "artifacts" / "val_predictions.json").read_text())
    stored = stored["predictions"] if isinstance(stored, dict) else stored
    conf, pred = logits.softmax(-1).max(-1)
    assert [r["prediction"] for r in stored] == [classes[int(i)] for i in pred]
    assert max(abs(r["confidence"] - float(c)) for r, c in zip(stored, conf)) < 1e-4
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "model", use_safetensors=True)
    with torch.no_grad():
        torch.testing.assert_close(merged.eval()(**seen["batch"]).logits, logits, rtol=0, atol=1e-5)


def test_lora_stops_keeps_its_adapter_checkpoint_and_resumes(tmp_path):
    from workers.hf import run
    from workers.hf.runner import latest_checkpoint

    spec, _, _ = _lm_spec(tmp_path, {"method": "lora", "gradient_checkpointing": True, "grad_accumulation": 2},
                          {"batch_size": 8})
    first = Recorder(stop_in_epoch=2)
    assert run(spec, [first]).status == "cancelled"
    assert any(m.startswith("effective batch size 16 (batch size 8 × 2") for m in first.messages), first.messages
    ckpt = latest_checkpoint(tmp_path / "job" / "hf-checkpoints")
    per_epoch = first.steps_per_epoch
    assert ckpt is not None and ckpt.name == f"checkpoint-{per_epoch}"
    assert (ckpt / "adapter_model.safetensors").is_file() and not (ckpt / "model.safetensors").exists()

    second = Recorder()
    result = run(spec, [second])
    assert result.status == "succeeded" and "model.zip" in result.artifacts
    assert any(f"resumed from the checkpoint after epoch 1 (step {per_epoch})" in m for m in second.messages)
    train_steps = [s for split, s, _ in second.logs if split == "train"]
    assert train_steps and min(train_steps) > per_epoch
    val = [v["loss"] for split, _, v in first.logs + second.logs if split == "val"]
    assert len(val) == 3 and val[-1] < val[0]
    with zipfile.ZipFile(tmp_path / "job" / "artifacts" / "model.zip") as zf:
        assert "adapter/adapter_model.safetensors" in zf.namelist()
        assert not any(n.startswith("model/") for n in zf.namelist())  # no merge asked


def test_qlora_is_refused_on_cpu_with_the_reason(tmp_path):
    from workers.hf import run
    from workers.hf.runner import HFJobError

    spec, _, _ = _lm_spec(tmp_path, {"method": "qlora"})
    rec = Recorder()
    with pytest.raises(HFJobError, match="4-bit QLoRA needs a CUDA GPU.*this worker trains on cpu"):
        run(spec, [rec])
    assert rec.hooks == [] and not (tmp_path / "job").exists()  # refused before anything loaded or ran


def test_fine_tuning_defaults_per_method_and_the_high_learning_rate_warning(tmp_path):
    import models_zoo
    from models_zoo.hf import with_fine_tune_defaults
    from models_zoo.hparams import TrainConfig
    from models_zoo.schema import validate
    from workers.hf.runner import _notes

    full = validate(TrainConfig, with_fine_tune_defaults({}, {"model": "x"}))
    assert (full.epochs, full.learning_rate, full.optimizer, full.batch_size) == (3, 2e-5, "adamw", 16)
    assert full.warmup_epochs == pytest.approx(0.06 * 3)
    lora = validate(TrainConfig, with_fine_tune_defaults({}, {"method": "lora"}))
    assert 1e-4 <= lora.learning_rate <= 2e-4 and lora.epochs == 3
    assert validate(TrainConfig, with_fine_tune_defaults({}, {"freeze_encoder": True})).learning_rate == 1e-3
    # What the job says wins; the warm-up follows the epochs it asked for.
    mine = validate(TrainConfig, with_fine_tune_defaults({"epochs": 10, "learning_rate": 5e-5}, {"method": "lora"}))
    assert (mine.epochs, mine.learning_rate, mine.warmup_epochs) == (10, 5e-5, pytest.approx(0.6))

    cfg = models_zoo.get("hf_text_classification").validate({"model": "x"})
    warnings = [t for level, t in _notes("x", True, None, TrainConfig(learning_rate=1e-3), cfg, 10) if level == "warning"]
    assert warnings and "learning rate 0.001 is high" in warnings[0]  # exactly 1e-3 warns
    assert not [1 for level, _ in _notes("x", True, None, TrainConfig(learning_rate=9e-4), cfg, 10) if level == "warning"]


def test_method_settings_are_validated_and_freeze_encoder_is_kept(tmp_path):
    import models_zoo
    from models_zoo.schema import ConfigError

    text = models_zoo.get("hf_text_classification")
    assert text.validate({"freeze_encoder": True}).method == "freeze_encoder"  # jobs stored before `method`
    assert text.validate({"freeze_encoder": False}).method == "full"
    cases = [({"method": "lora", "freeze_encoder": True}, "method"), ({"method": "dora"}, "method"),
             ({"lora_rank": 0}, "lora_rank"), ({"method": "lora", "lora_target_modules": "q v;"},
                                               "lora_target_modules"),
             ({"method": "qlora", "merge_adapter": True}, "merge_adapter"), ({"lora_rnk": 4}, "lora_rnk"),
             ({"grad_accumulation": 0}, "grad_accumulation")]
    for data, field in cases:
        with pytest.raises(ConfigError) as exc:
            text.validate(data)
        assert field in exc.value.errors, (data, exc.value.errors)
    with pytest.raises(ConfigError, match="no separate head"):
        models_zoo.get("hf_causal_lm").validate({"method": "freeze_encoder"})
    image = models_zoo.get("hf_image_classification").validate({"method": "lora", "lora_target_modules": "query,value"})
    assert image.lora_target_modules == "query,value"


def test_collapse_warnings_name_what_went_wrong():
    import numpy as np

    from workers.training.metrics import collapse_warnings

    one = collapse_warnings(np.zeros(10), ["neg", "pos"], np.array([0, 1] * 5))
    assert [w["code"] for w in one] == ["one_class"] and "class 'neg' (10 rows)" in one[0]["text"]
    assert collapse_warnings(np.zeros(10), ["neg", "pos"], np.zeros(10)) == []  # the truth is one class too
    assert collapse_warnings(np.array([0, 1, 0]), ["a", "b"], np.array([0, 1, 1])) == []
    flat = collapse_warnings(train_losses=[0.6931, 0.6932, 0.6929, 0.6935])
    assert [w["code"] for w in flat] == ["loss_flat"] and "0.6931" in flat[0]["text"]
    assert collapse_warnings(train_losses=[0.69, 0.6, 0.5]) == []
    assert collapse_warnings(train_losses=[0.69, 0.69]) == []  # too few points to say


def test_a_collapsed_classifier_is_flagged_on_the_result(tmp_path):
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification

    from tests.workers.test_hf import tiny_bert
    from workers.datasets import ingest
    from workers.hf import run
    from workers.hf.data import load_info, raw_texts

    ingest("text", datagen.sentiment_csv(tmp_path / "r.csv", n=40), tmp_path / "ds", {})
    folder = tiny_bert(tmp_path / "bert", raw_texts(tmp_path / "ds", load_info(tmp_path / "ds"))[0])
    stuck = tmp_path / "stuck"
    shutil.copytree(folder, stuck)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():  # a head that always says the first class, and a rate too small to change it
        model.classifier.bias.copy_(torch.tensor([50.0, -50.0]))
    model.save_pretrained(stuck)
    spec = TrainSpec("hf_text_classification", {"model": "local:stuck", "max_length": 32, "method": "freeze_encoder"},
                     {"epochs": 1, "batch_size": 8, "learning_rate": 1e-7}, str(tmp_path / "ds"), str(tmp_path / "job"),
                     device="cpu", log_interval=0.0, extra={"model_path": str(stuck)})
    rec = Recorder()
    result = run(spec, [rec])
    assert result.status == "succeeded"
    assert {w["code"] for w in result.warnings} == {"one_class", "loss_flat"}, result.warnings
    assert all(w["text"] in rec.messages for w in result.warnings)  # in the job log too
