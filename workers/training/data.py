"""Load a dataset cache as tensors, once, onto the training device."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class TensorData:
    info: dict
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor

    @property
    def task(self) -> str:
        return self.info["task"]


def load_cache(dataset_dir: str | Path, device: torch.device) -> TensorData:
    d = Path(dataset_dir)
    info = json.loads((d / "info.json").read_text())

    def tensor(name: str) -> torch.Tensor:
        # allow_pickle=False: the cache holds plain numeric arrays only.
        return torch.from_numpy(np.load(d / f"{name}.npy", allow_pickle=False)).to(device)

    data = TensorData(info, tensor("X_train"), tensor("y_train"), tensor("X_val"), tensor("y_val"))
    if data.task == "regression":
        norm = info["target_normalization"]
        # Train on standardised targets; metrics are reported in the original units.
        data.y_train = (data.y_train.float() - norm["mean"]) / norm["std"]
        data.y_val = (data.y_val.float() - norm["mean"]) / norm["std"]
    return data
