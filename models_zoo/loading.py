"""Rebuild a trained zoo model from its exported folder (torch-side; the registry stays torch-free)."""

from __future__ import annotations

import json
from pathlib import Path

from models_zoo import build_model

__all__ = ["load_model"]


def load_model(directory: str | Path):
    """Rebuild a downloaded model from `config.json` + `model.safetensors` (no web app).

    Returns (model in eval mode, config dict).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg = json.loads((directory / "config.json").read_text())
    # The weights come from model.safetensors: an initialisation file named in the config (a
    # ResNet's pretrained_path) is not read, and need not exist on this machine.
    model_config = {k: v for k, v in cfg["model_config"].items() if k != "pretrained_path"}
    model = build_model(cfg["architecture"], model_config, cfg["dataset"])
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    model.eval()
    return model, cfg
