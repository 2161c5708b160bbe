"""The architecture registry: a lazy map from name to (label, module, dataset kinds, tasks).

Importing this package never imports torch; `get(name).module` imports the family module,
whose `Config` and `validate_for(config, dataset_info)` are torch-free and whose
`build(config, dataset_info)` imports torch itself. `check_for_dataset()` is the check to run
before a job is queued: the config itself, the dataset's kind and task, then the family's own
dataset-dependent rules (heads dividing the width, images large enough for the pooling...).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from models_zoo._checks import kind_error
from models_zoo.schema import ConfigError, describe, validate

__all__ = ["ConfigError", "Entry", "REGISTRY", "get", "entries_for", "check_for_dataset", "build_model"]

SUPERVISED = ("classification", "regression")


@dataclass(frozen=True)
class Entry:
    name: str
    label: str
    module_path: str
    kinds: tuple[str, ...]
    tasks: tuple[str, ...] = SUPERVISED

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(self.module_path)

    @property
    def config_cls(self) -> type:
        return self.module.Config

    def describe(self) -> list[dict]:
        return describe(self.config_cls)

    def validate(self, data: dict | None) -> Any:
        # A module may rename settings that earlier versions stored (`upgrade(data) -> data`).
        upgrade = getattr(self.module, "upgrade", None)
        return validate(self.config_cls, upgrade(dict(data or {})) if upgrade else data)


REGISTRY: dict[str, Entry] = {
    e.name: e
    for e in [
        Entry("mlp", "MLP", "models_zoo.mlp", kinds=("tabular", "image", "sequence")),
        Entry("cnn", "CNN", "models_zoo.cnn", kinds=("image",)),
        Entry("resnet", "ResNet-18/34", "models_zoo.resnet", kinds=("image",)),
        Entry("cnn1d", "1-D CNN", "models_zoo.cnn1d", kinds=("sequence",)),
        Entry("rnn", "RNN / LSTM / GRU", "models_zoo.rnn", kinds=("text", "sequence")),
        Entry("transformer", "Transformer encoder", "models_zoo.transformer", kinds=("text", "sequence")),
        Entry("gpt", "GPT decoder", "models_zoo.gpt", kinds=("corpus",), tasks=("lm",)),
        # Pretrained Hugging Face transformers, fine-tuned by transformers.Trainer (workers.hf).
        Entry("hf_text_classification", "Hugging Face: text classifier (fine-tune)",
              "models_zoo.hf.text_classification", kinds=("text",), tasks=("classification",)),
        Entry("hf_causal_lm", "Hugging Face: causal LM (fine-tune)", "models_zoo.hf.causal_lm",
              kinds=("corpus", "chat"), tasks=("lm",)),
        Entry("hf_image_classification", "Hugging Face: image classifier (fine-tune)",
              "models_zoo.hf.image_classification", kinds=("image",), tasks=("classification",)),
    ]
}


def get(name: str) -> Entry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError({"architecture": f"unknown architecture {name!r}; choose one of "
                                           f"{', '.join(REGISTRY)}"}) from None


def entries_for(kind: str) -> list[Entry]:
    return [e for e in REGISTRY.values() if kind in e.kinds]


def check_for_dataset(name: str, config: dict | Any, info: dict) -> dict[str, str]:
    """Every reason `config` for architecture `name` cannot train on the dataset `info` describes,
    as field -> message ("architecture" for the choice of family); empty when it can.

    `config` is a validated Config or raw input (then validated first). Torch-free.
    """
    try:
        entry = get(name)
        if isinstance(config, dict):
            config = entry.validate(config)
    except ConfigError as exc:
        return dict(exc.errors)
    errors = kind_error(info, entry.kinds, entry.label)
    if errors:
        return errors
    task = info.get("task")
    if task is not None and task not in entry.tasks:
        return {"architecture": f"{entry.label} does not do {task} (it does: {', '.join(entry.tasks)})"}
    validate_for = getattr(entry.module, "validate_for", None)
    return dict(validate_for(config, info)) if validate_for is not None else {}


def build_model(name: str, config: dict | Any, info: dict):
    entry = get(name)
    if isinstance(config, dict):
        config = entry.validate(config)
    return entry.module.build(config, info)


def __getattr__(name: str):
    """`models_zoo.load_model`, as model cards exported before `models_zoo.loading` name it:
    resolved on first use, so importing the registry still imports no torch."""
    if name == "load_model":
        return importlib.import_module("models_zoo.loading").load_model
    raise AttributeError(f"module 'models_zoo' has no attribute {name!r}")
