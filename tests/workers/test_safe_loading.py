"""Model files and checkpoints are only loaded without unpickling: torch.load(weights_only=True),
safetensors, np.load(allow_pickle=False), from_pretrained(use_safetensors=True). A source scan
(so a new unsafe call fails here) plus a hostile checkpoint that must not run."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import torch

from workers.training.checkpoint import Checkpointer

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["workers", "webapp", "models_zoo"]


def _calls():
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    yield path.relative_to(ROOT), node


def _kw(node, name):
    return next((k.value for k in node.keywords if k.arg == name), None)


def _is_true(v):
    return isinstance(v, ast.Constant) and v.value is True


def _name(func) -> str:
    if isinstance(func, ast.Attribute):
        return f"{_name(func.value)}.{func.attr}"
    return func.id if isinstance(func, ast.Name) else "?"


def test_every_load_call_refuses_pickles():
    bad = []
    for path, node in _calls():
        name = _name(node.func)
        where = f"{path}:{node.lineno} {name}"
        if name.endswith("torch.load") and not _is_true(_kw(node, "weights_only")):
            bad.append(where + " without weights_only=True")
        elif name in {"np.load", "numpy.load"}:
            allow = _kw(node, "allow_pickle")
            if not (isinstance(allow, ast.Constant) and allow.value is False):
                bad.append(where + " without allow_pickle=False")
        elif name.split(".")[-1] in {"loads", "load"} and name.split(".")[0] in {"pickle", "cPickle", "dill",
                                                                                   "joblib", "cloudpickle"}:
            bad.append(where + " unpickles")
        elif name.endswith("from_pretrained") and "Model" in name and not _is_true(_kw(node, "use_safetensors")):
            bad.append(where + " without use_safetensors=True")
        elif name.endswith("from_pretrained"):
            trust = _kw(node, "trust_remote_code")
            if _is_true(trust):
                bad.append(where + " with trust_remote_code=True")
    assert bad == []


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/trainyard-pwned-by-checkpoint"),))


def test_a_hostile_pickle_checkpoint_is_not_executed(tmp_path):
    marker = Path("/tmp/trainyard-pwned-by-checkpoint")
    marker.unlink(missing_ok=True)
    ck = Checkpointer(tmp_path)
    good = ck.save({"epoch": 1, "w": torch.ones(2)}, 1)
    (tmp_path / "ckpt-000002.pt").write_bytes(pickle.dumps({"epoch": 2, "x": _Boom()}))
    state = ck.load_latest("cpu")  # the newer, hostile file is refused; the good one loads
    assert not marker.exists()
    assert state["epoch"] == 1 and good.exists()
