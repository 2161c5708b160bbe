"""Model files and checkpoints are only loaded without unpickling: torch.load(weights_only=True),
safetensors, np.load(allow_pickle=False), from_pretrained(use_safetensors=True). A source scan
(so a new unsafe call fails here) plus a hostile checkpoint that must not run."""

from __future__ import annotations

import ast
import pickle
import re
import textwrap
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
    assert bad == []


# -- from_pretrained --------------------------------------------------------------------------------
# Receivers whose from_pretrained reads no weights (JSON and vocabulary files only). Anything else
# (AutoModelFor..., a variable holding an auto class, cls, getattr(...)) must pass
# use_safetensors=True: deny by default, so a new model load is covered without editing this list.
NO_WEIGHTS = re.compile(r"(Tokenizer(Fast)?|Processor|FeatureExtractor|Config)$")


def _parents(tree) -> dict:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _scope(node, parents):
    while not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.Module)):
        node = parents[node]
    return node


def _dict_options(node, scope, depth=0) -> dict | None:
    """{option: value node} that `**node` certainly passes, or None when unreadable. A name is
    read from its dict-literal assignments in the enclosing function (or module); with several,
    only the options they all agree on count; a name that is mutated or built otherwise is unreadable."""
    if depth > 5:
        return None
    if isinstance(node, ast.Dict):
        out: dict = {}
        for key, value in zip(node.keys, node.values):
            if key is None:  # {**other, ...}
                inner = _dict_options(value, scope, depth + 1)
                out = dict(inner) if inner is not None else {}  # an unreadable unpacking may override what came before
            elif isinstance(key, ast.Constant) and isinstance(key.value, str):
                out[key.value] = value
        return out
    if not isinstance(node, ast.Name):
        return None
    found = []
    for n in ast.walk(scope):
        if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for t in n.targets if isinstance(n, ast.Assign) else [n.target]:
                if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id == node.id:
                    return None  # common["x"] = ...
                if isinstance(t, ast.Name) and t.id == node.id:
                    if isinstance(n, ast.AugAssign) or not isinstance(n.value, ast.Dict):
                        return None
                    found.append(_dict_options(n.value, scope, depth + 1))
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
              and n.func.value.id == node.id and n.func.attr in {"update", "pop", "setdefault", "clear", "popitem"}):
            return None
    if not found or None in found:
        return None
    first, *rest = found
    return {k: v for k, v in first.items() if all(k in o and ast.dump(o[k]) == ast.dump(v) for o in rest)}


def _options(call, scope) -> dict:
    """The keyword options a call certainly passes: explicit ones and readable **dicts."""
    out = {}
    for kw in call.keywords:
        if kw.arg is not None:
            out[kw.arg] = kw.value
        else:
            out.update(_dict_options(kw.value, scope) or {})
    return out


def _from_pretrained_problems(tree, where: str) -> tuple[list[str], int]:
    """(problems, number of weight-loading calls) for every `*.from_pretrained(` call in `tree`."""
    parents, bad, weight_loads = _parents(tree), [], 0
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "from_pretrained"):
            continue
        receiver = _name(node.func.value)
        at = f"{where}:{node.lineno} {receiver}.from_pretrained"
        opts = _options(node, _scope(node, parents))
        if not (isinstance(opts.get("trust_remote_code"), ast.Constant) and opts["trust_remote_code"].value is False):
            bad.append(at + " without trust_remote_code=False")
        if not NO_WEIGHTS.search(receiver.split(".")[-1]):
            weight_loads += 1
            if not _is_true(opts.get("use_safetensors")):
                bad.append(at + " without use_safetensors=True")
    return bad, weight_loads


def test_every_from_pretrained_loads_safetensors_and_no_remote_code():
    bad, hf_weight_loads = [], 0
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            problems, n = _from_pretrained_problems(ast.parse(path.read_text(), str(path)), str(path.relative_to(ROOT)))
            bad += problems
            hf_weight_loads += n if path.is_relative_to(ROOT / "workers" / "hf") else 0
    assert bad == []
    assert hf_weight_loads >= 1  # the scan sees the worker's model load (it is not vacuous)


def test_the_from_pretrained_scan_catches_regressions_and_spares_tokenizers():
    def problems(src: str) -> list[str]:
        return _from_pretrained_problems(ast.parse(textwrap.dedent(src)), "x.py")[0]

    good = """
        import transformers as tf
        def load(task, folder, has_weights):
            common = {"trust_remote_code": False}
            weights = {**common, "use_safetensors": True}
            auto = {"a": tf.AutoModelForSequenceClassification}[task]
            tok = tf.AutoTokenizer.from_pretrained(folder, **common)
            proc = tf.AutoImageProcessor.from_pretrained(folder, trust_remote_code=False)
            cfg = tf.AutoConfig.from_pretrained(folder, num_labels=2, **common)
            m1 = auto.from_pretrained(folder, use_safetensors=True, **common)
            m2 = auto.from_pretrained(folder, **weights)
            m3 = tf.AutoModelForCausalLM.from_pretrained(folder, **{"use_safetensors": True}, trust_remote_code=False)
    """
    assert problems(good) == []
    bad = """
        import transformers as tf
        def load(folder, opts):
            common = {"trust_remote_code": False}
            auto = tf.AutoModelForCausalLM
            a = auto.from_pretrained(folder, **common)                                    # no safetensors
            b = tf.BertForSequenceClassification.from_pretrained(folder, use_safetensors=False, **common)
            c = tf.AutoModel.from_pretrained(folder, use_safetensors=True)                # remote code not off
            d = tf.AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
            e = getattr(tf, "AutoModel").from_pretrained(folder, **opts)                  # unreadable options
            f = tf.AutoModel.from_pretrained(folder, **later)
        def other(folder):
            later = {"use_safetensors": True, "trust_remote_code": False}
            later["use_safetensors"] = False
            g = tf.AutoModel.from_pretrained(folder, **later)                             # mutated dict
            maybe = {"use_safetensors": True, "trust_remote_code": False}
            maybe = {"trust_remote_code": False}
            h = tf.AutoModel.from_pretrained(folder, **maybe)                             # not on every path
    """
    found = problems(bad)
    assert sorted(p.split(" ", 1)[0] for p in found) == sorted(
        ["x.py:6", "x.py:7", "x.py:8", "x.py:9", "x.py:10", "x.py:10", "x.py:11", "x.py:11", "x.py:15", "x.py:15",
         "x.py:18"]), found


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
