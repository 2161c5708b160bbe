"""The architecture registry: a lazy map from name to (label, module, dataset kinds).

Importing this package never imports torch; `get(name).module` imports the family module,
whose `Config` is torch-free and whose `build(config, dataset_info)` imports torch itself.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from models_zoo.schema import ConfigError, describe, validate

__all__ = ["ConfigError", "Entry", "REGISTRY", "get", "entries_for", "build_model", "load_model"]


@dataclass(frozen=True)
class Entry:
    name: str
    label: str
    module_path: str
    kinds: tuple[str, ...]
    tasks: tuple[str, ...] = ("classification", "regression")

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(self.module_path)

    @property
    def config_cls(self) -> type:
        return self.module.Config

    def describe(self) -> list[dict]:
        return describe(self.config_cls)

    def validate(self, data: dict | None) -> Any:
        return validate(self.config_cls, data)


REGISTRY: dict[str, Entry] = {
    e.name: e
    for e in [
        Entry("mlp", "MLP", "models_zoo.mlp", kinds=("tabular",)),
    ]
}


def get(name: str) -> Entry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError({"architecture": f"unknown architecture {name!r}"}) from None


def entries_for(kind: str) -> list[Entry]:
    return [e for e in REGISTRY.values() if kind in e.kinds]


def build_model(name: str, config: dict | Any, info: dict):
    entry = get(name)
    if isinstance(config, dict):
        config = entry.validate(config)
    return entry.module.build(config, info)


def load_model(directory: str | Path):
    """Rebuild a downloaded model from `config.json` + `model.safetensors` (no web app).

    Returns (model in eval mode, config dict).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg = json.loads((directory / "config.json").read_text())
    model = build_model(cfg["architecture"], cfg["model_config"], cfg["dataset"])
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    model.eval()
    return model, cfg
