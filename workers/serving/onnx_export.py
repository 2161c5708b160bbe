"""ONNX export of a trained zoo model, checked in onnxruntime (no Django).

`export(artifact_dir)` rebuilds the model from `config.json` + `model.safetensors`, exports it
with `torch.onnx.export` (TorchScript exporter, opset 17; input "input", output "output", the
batch axis dynamic, and the token axis too for GPT decoders), loads the file in onnxruntime and
compares its outputs with the PyTorch model's on a different batch size than the export's
(so the dynamic axis is exercised), on inputs shaped like the training data. The file is
written next to the other artifacts only when the largest absolute difference is within
`TOLERANCE`; the returned dict (also written as `model.onnx.json`) records it.

The ONNX model takes what the PyTorch model takes: normalised float images [B, C, H, W],
standardised features [B, F], scaled sequences [B, L, 1], token ids (int64) [B, max_len]
right-padded with 0, or GPT token ids [B, T ≤ block_size]; it returns logits (or the
standardised regression value).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# The support table is shared with the web tier (the job page): one definition in the contracts.
from models_zoo.contracts import onnx_unsupported as unsupported
from models_zoo.kinds import kind_of

OPSET = 17
TOLERANCE = 1e-4  # absolute, on logits / standardised outputs in float32


class ExportError(RuntimeError):
    """Why a model could not be exported or did not match, worded for the user."""


def example_inputs(config: dict, batch: int, seed: int = 0):
    """Inputs shaped like the training data (token ids with some padding for texts)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    info = config["dataset"]
    kind = kind_of(info)
    if kind == "corpus":
        block = int(config["model_config"].get("block_size", 64))
        return torch.randint(0, int(info["vocab_size"]), (batch, min(block, 16 + seed)), generator=g)
    shape = [int(s) for s in info["input_shape"]]
    if kind == "text":
        length = shape[0]
        x = torch.randint(2, max(3, int(info["vocab_size"])), (batch, length), generator=g)
        for i in range(batch):  # rows of different lengths, right-padded with 0
            keep = max(1, length - (i * length) // (batch + 1))
            x[i, keep:] = 0
        return x
    return torch.randn((batch, *shape), generator=g)


def export(directory: str | Path, tolerance: float = TOLERANCE) -> dict:
    import numpy as np
    import onnxruntime as ort
    import torch

    from models_zoo.loading import load_model

    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    if reason := unsupported(config):
        raise ExportError(reason)
    model, config = load_model(directory)
    kind = kind_of(config["dataset"])
    x = example_inputs(config, 2, seed=0)
    dynamic = {0: "batch", 1: "tokens"} if kind == "corpus" else {0: "batch"}
    out_dynamic = {0: "batch", 1: "tokens"} if kind == "corpus" else {0: "batch"}
    tmp = directory / ".model.onnx.tmp"
    check = example_inputs(config, 3, seed=1)  # another batch size than the export's
    with torch.no_grad():
        expected = model(check).float().numpy()
    reasons = []
    # Traced with autograd on: nn.TransformerEncoder's inference fast path (a fused op the
    # exporter does not know) is only taken under no_grad. The TorchScript exporter first; the
    # torch.export-based one when it refuses an op (the text transformer's in-place mask
    # update) or its graph does not generalise to another batch size (an expand traced as a
    # constant).
    for exporter in ("torchscript", "dynamo"):
        tmp.unlink(missing_ok=True)
        try:
            if exporter == "torchscript":
                torch.onnx.export(model, (x,), str(tmp), input_names=["input"], output_names=["output"],
                                  dynamic_axes={"input": dynamic, "output": out_dynamic}, opset_version=OPSET,
                                  dynamo=False)
            else:
                block = int(config["model_config"].get("block_size", 64))
                dims = {i: torch.export.Dim(name, min=1, max=4096 if name == "batch" else block)
                        for i, name in dynamic.items()}
                torch.onnx.export(model, (x,), str(tmp), input_names=["input"], output_names=["output"],
                                  dynamic_shapes=(dims,), opset_version=18, dynamo=True, verbose=False)
        except Exception as exc:  # noqa: BLE001 - the exporters raise many kinds; the reason is shown
            reasons.append(f"{exporter} exporter: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}")
            continue
        try:
            session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            got = session.run(["output"], {"input": check.numpy()})[0]
        except Exception as exc:  # noqa: BLE001
            reasons.append(f"{exporter} exporter: onnxruntime could not run the file: {type(exc).__name__}: "
                           f"{str(exc).strip().splitlines()[0][:300]}")
            continue
        if got.shape != expected.shape:
            reasons.append(f"{exporter} exporter: onnxruntime returned shape {got.shape}, PyTorch {expected.shape}")
            continue
        diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
        if not diff <= tolerance:
            reasons.append(f"{exporter} exporter: onnxruntime's outputs differ from PyTorch's by up to {diff:.3g} "
                           f"(tolerance {tolerance:g})")
            continue
        break
    else:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"this {config['architecture']} model could not be exported to ONNX and checked; "
                          + "; ".join(reasons))
    meta = {
        "format": "onnx", "opset": OPSET, "input": {"name": "input", "shape": ["batch", *list(check.shape[1:])]
                                                     if kind != "corpus" else ["batch", "tokens"],
                                                     "dtype": str(check.dtype).replace("torch.", "")},
        "output": "output", "exporter": exporter, "max_abs_diff": diff, "tolerance": tolerance, "checked_batch": int(check.shape[0]),
        "torch_version": torch.__version__, "onnxruntime_version": ort.__version__,
    }
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(directory / "model.onnx")
    meta_tmp = directory / ".model.onnx.json.tmp"
    meta_tmp.write_text(json.dumps(meta, indent=2))
    meta_tmp.replace(directory / "model.onnx.json")
    return meta
