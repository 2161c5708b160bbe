"""ONNX export of every zoo family: the file loads in onnxruntime, its outputs match PyTorch's
within tolerance on another batch size than the export's, and the check is recorded."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
from safetensors.torch import save_file  # noqa: E402

import models_zoo  # noqa: E402
import models_zoo.loading  # noqa: E402
from workers.serving import onnx_export as export_onnx  # noqa: E402

INFOS = {
    "tabular": {"kind": "tabular", "task": "classification", "input_shape": [5], "num_outputs": 3,
                "classes": ["a", "b", "c"]},
    "image": {"kind": "image", "task": "classification", "input_shape": [3, 16, 16], "num_outputs": 4,
              "image_size": 16, "channels": "RGB"},
    "text": {"kind": "text", "task": "classification", "input_shape": [12], "vocab_size": 40, "max_len": 12,
             "num_outputs": 2},
    "sequence": {"kind": "sequence", "task": "regression", "input_shape": [20, 1], "num_outputs": 1},
    "corpus": {"kind": "corpus", "task": "lm", "vocab_size": 30, "num_outputs": 30},
}
CASES = [
    ("mlp", "tabular", {"hidden_sizes": "16,8"}),
    ("mlp", "image", {"hidden_sizes": "8", "norm": "batch"}),
    ("cnn", "image", {}),
    ("resnet", "image", {"small_input": "on"}),
    ("cnn1d", "sequence", {}),
    ("rnn", "sequence", {"hidden_size": 8}),
    ("transformer", "text", {"layers": 1, "heads": 2, "width": 16, "ffn_size": 32}),
    ("transformer", "sequence", {"layers": 1, "heads": 2, "width": 16, "ffn_size": 32, "pooling": "cls"}),
    ("gpt", "corpus", {"layers": 1, "heads": 2, "width": 16, "block_size": 32}),
]


def exported_dir(tmp_path, name: str, kind: str, model_config: dict):
    info = INFOS[kind]
    entry = models_zoo.get(name)
    cfg = entry.validate(model_config)
    torch.manual_seed(0)
    model = entry.module.build(cfg, info)
    from models_zoo.schema import to_json

    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({
        "architecture": name, "model_config": to_json(cfg), "dataset": info, "input_shape": info.get("input_shape"),
        "class_names": info.get("classes")}))
    return tmp_path


@pytest.mark.parametrize("name,kind,model_config", CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_export_matches_pytorch(tmp_path, name, kind, model_config):
    import numpy as np
    import onnxruntime as ort

    d = exported_dir(tmp_path, name, kind, model_config)
    meta = export_onnx.export(d)
    assert (d / "model.onnx").is_file() and not list(d.glob(".*tmp"))
    assert meta["max_abs_diff"] <= export_onnx.TOLERANCE
    assert json.loads((d / "model.onnx.json").read_text())["max_abs_diff"] == meta["max_abs_diff"]
    # Loaded back on its own, it answers a batch size it was not exported with.
    model, config = models_zoo.loading.load_model(d)
    x = export_onnx.example_inputs(config, 5, seed=7)
    session = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= export_onnx.TOLERANCE


def test_mismatch_beyond_tolerance_keeps_no_file(tmp_path):
    d = exported_dir(tmp_path, "mlp", "tabular", {"hidden_sizes": "8"})
    with pytest.raises(export_onnx.ExportError, match="differ from PyTorch"):
        export_onnx.export(d, tolerance=-1.0)
    assert not (d / "model.onnx").exists() and not list(d.glob(".*tmp"))


def test_rnn_text_models_say_why_they_cannot_export(tmp_path):
    d = exported_dir(tmp_path, "rnn", "text", {"hidden_size": 8, "embedding_dim": 8})
    assert "pack_padded_sequence" in export_onnx.unsupported(json.loads((d / "config.json").read_text()))
    with pytest.raises(export_onnx.ExportError, match="pack_padded_sequence"):
        export_onnx.export(d)
    assert not (d / "model.onnx").exists()
