"""workers.hf without the stack: what is refused before loading (pickles, remote code, offline
Hub ids), the model ZIP checks, resume from a Trainer checkpoint after a stop, a CPU smoke test of
every HF registry entry (export → from_pretrained → same logits), the frozen encoder, and the
training settings that reach transformers.TrainingArguments."""

from __future__ import annotations

import json
import math
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
    """Every hook in the order it fired (messages aside), plus what the tests look at."""

    def __init__(self, stop_in_epoch: int | None = None):
        self.stop_in_epoch = stop_in_epoch
        self.steps_per_epoch = 0
        self.hooks, self.messages, self.logs, self.samples = [], [], [], []

    def on_train_begin(self, state, control):
        self.hooks.append("on_train_begin")

    def on_step_end(self, state, control):
        self.hooks.append("on_step_end")
        self.steps_per_epoch = state.steps_per_epoch
        if self.stop_in_epoch is not None and state.step >= state.steps_per_epoch * (self.stop_in_epoch - 1) + 2:
            control.should_stop = True

    def on_log(self, state, control, split, values):
        self.hooks.append(f"on_log:{split}")
        self.logs.append((split, state.step, values))

    def on_eval(self, state, control, metrics):
        self.hooks.append("on_eval")

    def on_samples(self, state, control, samples):
        self.hooks.append("on_samples")
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


def test_a_fenced_run_marks_no_checkpoint_and_writes_no_model(tmp_path):
    """Ownership (issue "Nothing runs twice"): each attempt checkpoints into its own folder; the
    next attempt resumes from the newest complete checkpoint of any attempt and retires the
    older folders once it has its own; a run that lost its job (the fence refuses its moves)
    stops at its first checkpoint, marks nothing complete and leaves the live run's files alone."""
    from workers.datasets import ingest
    from workers.hf import run
    from workers.hf.runner import latest_checkpoint
    from workers.training.artifacts import Fenced, fenced_by

    def owner(moves):
        for src, dst in moves:
            os.replace(src, dst)
        return True

    corpus = datagen.repetitive_corpus(tmp_path / "c.txt", repeats=40)
    ingest("corpus", corpus, tmp_path / "ds", {})
    model = hfmodels.tiny_gpt2(tmp_path / "gpt", corpus.read_text())
    job = tmp_path / "job"
    job.mkdir()
    ckpts = job / "hf-checkpoints"
    spec = TrainSpec("hf_causal_lm", {"model": "local:gpt", "block_size": 32, "max_new_tokens": 8},
                     {"epochs": 3, "batch_size": 16, "learning_rate": 3e-3}, str(tmp_path / "ds"),
                     str(job), extra={"model_path": str(model)})
    first = Recorder(stop_in_epoch=2)
    with fenced_by("1", owner):
        assert run(spec, [first]).status == "cancelled"
    one = latest_checkpoint(ckpts)
    assert one is not None and one.parent.name == "run-1"

    # Attempt 3 lost the job (attempt 2 owns it now): it trains from attempt 1's checkpoint,
    # and its own first checkpoint is refused.
    with fenced_by("3", lambda moves: False), pytest.raises(Fenced):
        run(spec, [Recorder()])
    assert not (ckpts / "run-3").exists()
    assert latest_checkpoint(ckpts) == one and (one / ".trainyard-complete").is_file()
    assert not (job / "artifacts" / "model.zip").exists()
    assert not [p.name for p in job.rglob("*") if p.name.endswith(".tmp")]

    # Attempt 2 resumes from attempt 1's checkpoint, and retires its folder once it has its own.
    second = Recorder(stop_in_epoch=3)
    with fenced_by("2", owner):
        assert run(spec, [second]).status == "cancelled"
    assert any("resumed from the checkpoint after epoch 1" in m for m in second.messages)
    assert sorted(p.name for p in ckpts.iterdir()) == ["run-2"]
    two = latest_checkpoint(ckpts)
    assert two.parent.name == "run-2" and two.name != one.name
    # Attempt 4 finishes from attempt 2's.
    last = Recorder()
    with fenced_by("4", owner):
        result = run(spec, [last])
    assert result.status == "succeeded" and (job / "artifacts" / "model.zip").is_file()
    assert any("resumed from the checkpoint after epoch 2" in m for m in last.messages)
    assert not ckpts.exists()  # a finished job keeps no checkpoints
    assert sorted(p.name for p in job.iterdir()) == ["artifacts"]


def test_unsupported_training_settings_are_refused():
    from models_zoo.hf import train_errors
    from models_zoo.hparams import TrainConfig

    errors = train_errors(TrainConfig(optimizer="rmsprop", lr_schedule="onecycle", early_stopping_patience=3))
    assert set(errors) == {"optimizer", "lr_schedule", "early_stopping_patience"}
    assert train_errors(TrainConfig()) == {}


# -- the registry's HF entries on CPU: tiny random models, a couple of steps ----------------------------
TASK_OF = {"hf_text_classification": "text_classification", "hf_causal_lm": "causal_lm",
           "hf_image_classification": "image_classification"}


def tiny_bert(folder: Path, texts: list[str], num_labels: int = 2, seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT classifier with a word-level tokenizer trained on `texts`."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=fast.pad_token_id,
                        num_labels=num_labels)
    BertForSequenceClassification(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sentiment_ds(tmp_path_factory) -> Path:
    from workers.datasets import ingest

    tmp = tmp_path_factory.mktemp("sentiment")
    ingest("text", datagen.sentiment_csv(tmp / "reviews.csv", n=40), tmp / "ds", {})  # 32 training rows
    return tmp / "ds"


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory, sentiment_ds) -> Path:
    from workers.hf.data import load_info, raw_texts

    train_texts, _ = raw_texts(sentiment_ds, load_info(sentiment_ds))
    return tiny_bert(tmp_path_factory.mktemp("bert") / "bert", train_texts)


def _text_case(request, tmp: Path):
    return (request.getfixturevalue("sentiment_ds"), request.getfixturevalue("bert_dir"),
            {"model": "local:bert", "max_length": 32}, {"batch_size": 16})


def _lm_case(request, tmp: Path):
    from workers.datasets import ingest

    corpus = datagen.repetitive_corpus(tmp / "c.txt", repeats=20)
    ingest("corpus", corpus, tmp / "ds", {})
    return (tmp / "ds", hfmodels.tiny_gpt2(tmp / "gpt", corpus.read_text()),
            {"model": "local:gpt", "block_size": 16, "max_new_tokens": 4}, {"batch_size": 32})


def _image_case(request, tmp: Path):
    from workers.datasets import ingest

    ingest("image", datagen.digits_png_zip(tmp / "digits.zip", limit=100), tmp / "ds", {})  # 80 training, 8×8
    return tmp / "ds", hfmodels.tiny_vit(tmp / "vit", image_size=8, channels=1), {"model": "local:vit"}, \
        {"batch_size": 40}


CASES = {"hf_text_classification": _text_case, "hf_causal_lm": _lm_case, "hf_image_classification": _image_case}


def _val_batch(task: str, model, processor, dataset_dir: Path, model_config: dict) -> dict:
    """The first validation examples as model inputs, made the way the worker makes them."""
    from transformers import DataCollatorWithPadding, default_data_collator

    from workers.hf import data as hfdata

    info = hfdata.load_info(dataset_dir)
    if task == "text_classification":
        _, val, _ = hfdata.text_classification(dataset_dir, info, processor, model_config["max_length"])
        collate = DataCollatorWithPadding(processor)
    elif task == "causal_lm":
        _, val, _ = hfdata.causal_lm(dataset_dir, info, processor, model_config["block_size"])
        collate = default_data_collator
    else:
        _, val = hfdata.image_classification(dataset_dir, info)
        collate = hfdata.ImageCollator(processor, model.config.num_channels)
    batch = dict(collate([val[i] for i in range(min(16, len(val)))]))
    batch.pop("labels")
    return batch


def _unzip_model(job_dir: Path, out: Path) -> Path:
    with zipfile.ZipFile(job_dir / "artifacts" / "model.zip") as zf:
        names = set(zf.namelist())
        assert {"model/config.json", "model/model.safetensors"} <= names, names
        assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names), names  # no pickles
        zf.extractall(out)
    return out / "model"


def _load_exported(task: str, folder: Path):
    import transformers as tf

    auto = {"text_classification": tf.AutoModelForSequenceClassification, "causal_lm": tf.AutoModelForCausalLM,
            "image_classification": tf.AutoModelForImageClassification}[task]
    model = auto.from_pretrained(folder, use_safetensors=True, trust_remote_code=False).eval()
    processor_cls = tf.AutoImageProcessor if task == "image_classification" else tf.AutoTokenizer
    return model, processor_cls.from_pretrained(folder, trust_remote_code=False)


@pytest.mark.parametrize("arch", list(CASES))
def test_hf_entry_smoke_on_cpu_exports_a_model_that_predicts_the_same(arch, request, tmp_path, monkeypatch):
    import torch

    import models_zoo
    from workers.hf import run, runner

    assert TASK_OF == runner.TASKS and models_zoo.get(arch).name == arch  # every HF registry entry is here
    task = TASK_OF[arch]
    dataset_dir, folder, model_config, train_config = CASES[arch](request, tmp_path)
    spec = TrainSpec(arch, model_config, {"epochs": 1, "learning_rate": 1e-3, **train_config}, str(dataset_dir),
                     str(tmp_path / "job"), device="cpu", log_interval=3600.0,
                     extra={"model_path": str(folder)})

    # What the trained model predicts in the worker, just before it is exported.
    before: dict = {}
    real_export = runner.export

    def export_spy(output_dir, trainer, processor, *args):
        model = trainer.model.eval()
        before["class"] = type(model).__name__
        before["batch"] = _val_batch(task, model, processor, dataset_dir, model_config)
        with torch.no_grad():
            before["logits"] = model(**before["batch"]).logits
        return real_export(output_dir, trainer, processor, *args)

    monkeypatch.setattr(runner, "export", export_spy)
    rec = Recorder()
    result = run(spec, [rec])

    assert result.status == "succeeded" and "model.zip" in result.artifacts
    steps = rec.hooks.count("on_step_end")
    assert steps >= 2 and steps == rec.steps_per_epoch, rec.hooks
    collapsed = [h for i, h in enumerate(rec.hooks) if i == 0 or h != rec.hooks[i - 1]]
    assert collapsed == ["on_train_begin", "on_step_end", "on_log:train", "on_log:val", "on_eval", "on_samples",
                         "on_epoch_end", "on_train_end:succeeded"]
    losses = [v["loss"] for _, _, v in rec.logs] + [result.metrics["loss"]]
    assert all(math.isfinite(x) for x in losses), losses
    assert rec.samples[-1]

    # The download: a save_pretrained folder that from_pretrained loads (safetensors), and its own
    # tokenizer/processor turns the validation data into the same inputs and the same logits.
    model, processor = _load_exported(task, _unzip_model(tmp_path / "job", tmp_path / "unzipped"))
    assert type(model).__name__ == before["class"]
    batch = _val_batch(task, model, processor, dataset_dir, model_config)
    assert batch.keys() == before["batch"].keys()
    for key, value in batch.items():
        torch.testing.assert_close(value, before["batch"][key], rtol=0, atol=0, msg=key)
    with torch.no_grad():
        logits = model(**batch).logits
    torch.testing.assert_close(logits, before["logits"], rtol=1e-5, atol=1e-5)


def test_freeze_encoder_trains_only_the_classification_head(sentiment_ds, bert_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    from workers.hf import run

    spec = TrainSpec("hf_text_classification", {"model": "local:bert", "max_length": 32, "freeze_encoder": True},
                     {"epochs": 1, "batch_size": 16, "learning_rate": 1e-2, "weight_decay": 0.1,
                      "optimizer": "adamw"},
                     str(sentiment_ds), str(tmp_path / "job"), device="cpu", extra={"model_path": str(bert_dir)})
    rec = Recorder()
    result = run(spec, [rec])
    assert result.status == "succeeded" and rec.hooks.count("on_step_end") == 2
    head_params = 32 * 2 + 2  # classifier: Linear(hidden 32 -> 2 labels)
    assert f"encoder frozen: training {head_params:,} parameters (the head)" in rec.messages

    initial = load_file(str(bert_dir / "model.safetensors"))
    trained = load_file(str(_unzip_model(tmp_path / "job", tmp_path / "unzipped") / "model.safetensors"))
    assert trained.keys() == initial.keys()
    head = {k for k in initial if k.startswith("classifier.")}
    assert head == {"classifier.weight", "classifier.bias"}
    changed = {k for k in initial if not torch.equal(initial[k], trained[k])}
    assert changed == head  # the encoder (embeddings, layers, pooler) is exactly the pretrained one


def test_warmup_weight_decay_and_schedule_reach_the_training_arguments(tmp_path):
    import torch
    from transformers.trainer_utils import SchedulerType

    from models_zoo.hparams import TrainConfig
    from workers.hf.runner import _training_args

    cpu = torch.device("cpu")
    tc = TrainConfig(epochs=3, batch_size=8, learning_rate=3e-5, optimizer="adamw", weight_decay=0.05,
                     lr_schedule="cosine", warmup_epochs=1.5)
    args, bf16 = _training_args(tc, tmp_path / "ck", cpu, steps_per_epoch=10, task="text_classification")
    assert args.lr_scheduler_type == SchedulerType.COSINE  # the Trainer's cosine has the linear warm-up
    assert args.warmup_steps == 15 and args.get_warmup_steps(30) == 15
    assert args.weight_decay == 0.05 and args.learning_rate == 3e-5 and args.num_train_epochs == 3
    assert args.per_device_train_batch_size == 8 and args.optim == "adamw_torch" and bf16 is False
    assert args.logging_nan_inf_filter is False  # no host sync per step for the NaN check

    args, _ = _training_args(TrainConfig(warmup_epochs=0.5), tmp_path / "ck", cpu, 10, "text_classification")
    assert args.lr_scheduler_type == SchedulerType.CONSTANT_WITH_WARMUP and args.get_warmup_steps(100) == 5
    args, _ = _training_args(TrainConfig(), tmp_path / "ck", cpu, 10, "causal_lm")
    assert args.lr_scheduler_type == SchedulerType.CONSTANT and args.get_warmup_steps(100) == 0
    assert args.weight_decay == 0.0


@pytest.mark.parametrize("kind", ["text", "image"])
def test_hf_evaluates_the_test_split_once_on_the_final_model(kind, tmp_path):
    """A dataset with a test split (a split column, test/ folders): after training, one test
    evaluation of the exported model, reported as its own group (never on_eval), in the result
    and the model card."""
    from workers.datasets import ingest
    from workers.hf import run
    from workers.hf.data import load_info, raw_texts

    ds = tmp_path / "ds"
    if kind == "text":
        ingest("text", datagen.sentiment_csv(tmp_path / "r.csv", n=60, split=True), ds, {})
        folder = tiny_bert(tmp_path / "bert", raw_texts(ds, load_info(ds))[0])
        arch, model_config, batch = "hf_text_classification", {"model": "local:bert", "max_length": 32}, 16
    else:
        ingest("image", datagen.digits_png_zip(tmp_path / "d.zip", limit=120, splits=True), ds, {})
        folder = hfmodels.tiny_vit(tmp_path / "vit", image_size=8, channels=1)
        arch, model_config, batch = "hf_image_classification", {"model": "local:vit"}, 40
    assert load_info(ds)["num_test"] > 0
    spec = TrainSpec(arch, model_config, {"epochs": 1, "learning_rate": 1e-3, "batch_size": batch}, str(ds),
                     str(tmp_path / "job"), device="cpu", log_interval=3600.0, extra={"model_path": str(folder)})
    rec = Recorder()
    result = run(spec, [rec])
    assert result.status == "succeeded"
    assert [h for h in rec.hooks if h == "on_log:test"] == ["on_log:test"]
    assert rec.hooks.index("on_log:test") > max(i for i, h in enumerate(rec.hooks) if h in ("on_eval", "on_log:val"))
    assert {"loss", "accuracy"} <= set(result.test_metrics) and math.isfinite(result.test_metrics["loss"])
    assert "## Test metrics" in (tmp_path / "job" / "artifacts" / "MODEL_CARD.md").read_text()


def test_a_half_precision_checkpoint_is_trained_with_float32_weights(sentiment_ds, bert_dir, tmp_path):
    """Hub checkpoints are often saved in fp16/bf16; transformers would load them as such, and
    AdamW on half weights loses the updates. Mixed precision is autocast's job, not the weights'."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification

    from workers.hf.data import load_info
    from workers.hf.runner import _load

    half = tmp_path / "half"
    shutil.copytree(bert_dir, half)
    AutoModelForSequenceClassification.from_pretrained(bert_dir, num_labels=2).to(torch.float16).save_pretrained(half)
    model, _ = _load("text_classification", half, True, load_info(sentiment_ds))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
