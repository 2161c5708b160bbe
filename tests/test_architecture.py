"""Guards for the package map in docs/architecture.md: who may import whom, no import cycles,
and no function too complex to read.

The import walk reads every module's AST (no module is imported, so it needs neither torch nor
Django), and counts every `import`/`from ... import` statement wherever it stands: a function-level
import is as much a dependency as a module-level one, it only runs later. Relative imports are
resolved against the module's package; `import a.b.c` is an edge to module a.b.c, and
`from a.b import c` an edge to a.b.c when that is a module, else to a.b (importing a package is
importing its __init__). Imports by computed name (`importlib.import_module(path)`, the lazy
model registry) are not edges: they are the point of a lazy registry.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("webapp", "workers", "models_zoo", "bench")

# The web tier sends Celery tasks by name (webapp/celery.py) and never loads torch-side code.
TORCH_SIDE = ("torch", "torchvision", "transformers", "peft")  # and every onnx* distribution
# The pure runtime and the model zoo run without Django: a worker that trains or ingests does
# not need the web tier's settings, models or database to do it.
PURE_RUNTIME = ("workers.training", "workers.datasets", "workers.hf", "workers.serving", "workers.exports",
                "models_zoo")
DJANGO_SIDE = ("django", "webapp", "workers.adapters")
# The contracts both sides import: stdlib and each other only (no torch, Django, numpy...).
# kinds and contracts are listed before they exist so that the rule holds the day they appear.
CONTRACTS = ("models_zoo", "models_zoo.schema", "models_zoo.hparams", "models_zoo.kinds", "models_zoo.contracts",
             "models_zoo._checks", "models_zoo.defaults")
CONTRACT_PACKAGES = ("models_zoo.hf",)  # every module in it: torch-free configs of the HF families

MAX_COMPLEXITY = 30
LOOP_RUN_MAX_COMPLEXITY = 15


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (internal and resolved, or an external dotted name)
    path: str  # the importing file, relative to the root
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Every module of the packages, by dotted name; tests and migrations are not checked."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if {"migrations", "tests"} & set(relative.parts[:-1]) or relative.name.startswith("test_"):
                continue
            modules[module_name(relative)] = path
    return modules


def imports_of(name: str, path: Path, known: set[str], root: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    where = str(path.relative_to(root))
    found = []
    for node in ast.walk(tree):  # every depth: function-level imports count
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, where, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base = ".".join(parts[:len(parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module and base else (node.module or base)
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(name, sub if sub in known else base, where, node.lineno))
    return list(dict.fromkeys(found))  # `from a import b, c` is one edge to a, once


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, list[Import]]:
    modules = discover(root, packages)
    known = set(modules)
    return {name: imports_of(name, path, known, root) for name, path in modules.items()}


def is_contract(module: str) -> bool:
    return module in CONTRACTS or any(within(module, p) and module != p for p in CONTRACT_PACKAGES) \
        or module in CONTRACT_PACKAGES


def forbidden_edges(graph: dict[str, list[Import]], packages: Iterable[str] = PACKAGES) -> list[str]:
    """One message per forbidden import, naming every rule it breaks."""
    internal_tops = set(packages)
    problems = []
    for source, imports in graph.items():
        for imp in imports:
            target, top = imp.target, imp.target.split(".")[0]
            broken = []
            if within(source, "webapp") and (within(target, "workers") or top in TORCH_SIDE
                                             or top.startswith("onnx")):
                broken.append("the web tier never imports workers.* or torch-side libraries")
            if any(within(source, p) for p in PURE_RUNTIME) and any(within(target, d) for d in DJANGO_SIDE):
                broken.append("the pure runtime and models_zoo never import Django, webapp or workers.adapters")
            if is_contract(source):
                allowed = is_contract(target) if top in internal_tops else top in sys.stdlib_module_names
                if not allowed:
                    broken.append("a contracts module imports only the standard library and other contracts")
            if broken:
                problems.append(f"{imp.where()}: {source} imports {target} ({'; '.join(broken)})")
    return problems


def import_cycles(graph: dict[str, list[Import]]) -> list[str]:
    """One message per strongly connected component of the module graph (Tarjan), showing one
    cycle through it with the line of each edge."""
    edges: dict[str, dict[str, Import]] = {}
    for source, imports in graph.items():
        for imp in imports:
            if imp.target in graph and imp.target != source:
                edges.setdefault(source, {}).setdefault(imp.target, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                connect(v)
    finally:
        sys.setrecursionlimit(limit)

    messages = []
    for component in sorted(components):
        members = set(component)
        start = component[0]
        # Breadth-first inside the component from `start` back to itself: the shortest cycle.
        previous: dict[str, str] = {}
        queue = [start]
        while queue and start not in previous:
            v = queue.pop(0)
            for w in sorted(edges.get(v, {})):
                if w in members and w not in previous:
                    previous[w] = v
                    queue.append(w)
        path = [start]
        while True:
            path.append(previous[path[-1]])
            if path[-1] == start:
                break
        path.reverse()
        hops = ", ".join(edges[a][b].where() for a, b in zip(path, path[1:]))
        messages.append(f"import cycle: {' -> '.join(path)} ({hops}); modules in it: {', '.join(component)}")
    return messages


def complexity_problems(root: Path, packages: Iterable[str] = PACKAGES) -> list[str]:
    from radon.complexity import cc_visit
    from radon.visitors import Function

    def functions(blocks):
        # cc_visit lists methods both on their class and on their own; closures only on their function.
        for block in blocks:
            if isinstance(block, Function):
                yield block
                yield from functions(block.closures)

    problems = []
    for name, path in discover(root, packages).items():
        relative = path.relative_to(root)
        seen = set()
        for fn in functions(cc_visit(path.read_text())):
            if (fn.lineno, fn.fullname) in seen:
                continue
            seen.add((fn.lineno, fn.fullname))
            limit = MAX_COMPLEXITY
            if str(relative) == "workers/training/loop.py" and fn.name == "run" and not fn.is_method:
                limit = LOOP_RUN_MAX_COMPLEXITY  # the training loop reads top-down in a screen
            if fn.complexity > limit:
                problems.append((fn.complexity, f"{relative}:{fn.lineno} {fn.fullname}: cyclomatic complexity "
                                                f"{fn.complexity} > {limit}"))
    return [message for _, message in sorted(problems, reverse=True)]


def _report(title: str, problems: list[str]) -> str:
    return f"{len(problems)} {title}:\n" + "\n".join(problems)


# -- the guards, on the real tree -------------------------------------------------------------

def test_no_forbidden_imports():
    problems = forbidden_edges(import_graph(ROOT))
    assert not problems, _report("forbidden imports (see docs/architecture.md)", problems)


def test_no_import_cycles_between_modules():
    problems = import_cycles(import_graph(ROOT))
    assert not problems, _report("import cycles", problems)


def test_no_function_is_too_complex():
    problems = complexity_problems(ROOT)
    assert not problems, _report("functions above the complexity limit (radon cc)", problems)


# -- the walker itself, on a fake tree --------------------------------------------------------

def _tree(root: Path, files: dict[str, str]) -> Path:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


CLEAN = {
    "webapp/__init__.py": "",
    "webapp/jobs/__init__.py": "",
    "webapp/jobs/services.py": "from __future__ import annotations\nimport django\nfrom . import models\n"
                               "from models_zoo import REGISTRY\n",
    "webapp/jobs/models.py": "from django.db import models\nfrom models_zoo.schema import validate\n",
    "webapp/jobs/migrations/0001_initial.py": "import workers.adapters.tasks\n",  # not checked
    "workers/__init__.py": "",
    "workers/adapters/__init__.py": "",
    "workers/adapters/tasks.py": "import django\nfrom webapp.jobs.models import Job\nfrom workers.training import loop\n",
    "workers/training/__init__.py": "",
    "workers/training/loop.py": "import torch\nimport numpy\nfrom models_zoo import schema\n\n"
                                "def run(spec):\n    from ..datasets import common\n    return common\n",
    "workers/datasets/__init__.py": "",
    "workers/datasets/common.py": "import os\n",
    "models_zoo/__init__.py": "import importlib\nfrom models_zoo.schema import validate\nfrom .hf import causal_lm\n",
    "models_zoo/schema.py": "from __future__ import annotations\nimport dataclasses\nfrom . import hparams\n",
    "models_zoo/hparams.py": "import typing\n",
    "models_zoo/mlp.py": "import torch\nfrom .schema import validate\n",
    "models_zoo/hf/__init__.py": "",
    "models_zoo/hf/causal_lm.py": "from ..schema import validate\n",
    "bench/load_test.py": "import requests\nfrom webapp.jobs import services\n",
}


def test_walker_passes_a_clean_tree(tmp_path):
    graph = import_graph(_tree(tmp_path, CLEAN))
    assert "webapp.jobs.migrations.0001_initial" not in graph
    targets = {i.target for i in graph["workers.training.loop"]}
    assert "workers.datasets.common" in targets  # function-level, relative two levels up
    assert {i.target for i in graph["webapp.jobs.services"]} >= {"webapp.jobs.models", "models_zoo"}
    assert forbidden_edges(graph) == [] and import_cycles(graph) == []


def test_walker_finds_every_forbidden_edge_and_cycle(tmp_path):
    bad = CLEAN | {
        # web -> worker code, in a function; web -> torch
        "webapp/inference/__init__.py": "",
        "webapp/inference/views.py": "def predict():\n    from workers.serving.predict import run\n    import torch\n",
        # pure runtime -> Django side
        "workers/serving/__init__.py": "",
        "workers/serving/predict.py": "from webapp.jobs.models import Job\n\ndef f():\n    import workers.adapters.tasks\n",
        "workers/datasets/common.py": "import os\nfrom django.conf import settings\n",
        # a contract -> numpy, and -> a torch-side family; a new contracts module -> django
        "models_zoo/hparams.py": "import typing\nimport numpy\n",
        "models_zoo/hf/causal_lm.py": "from ..schema import validate\nfrom models_zoo import mlp\n",
        "models_zoo/kinds.py": "import django\nfrom models_zoo.contracts import LIMITS\n",
        # a cycle through a function-level import: services -> dispatch -> services
        "webapp/jobs/dispatch.py": "def dispatch():\n    from webapp.jobs.services import enqueue\n",
        "webapp/jobs/services.py": CLEAN["webapp/jobs/services.py"] + "from .dispatch import dispatch\n",
    }
    graph = import_graph(_tree(tmp_path, bad))
    problems = forbidden_edges(graph)
    text = "\n".join(problems)
    for expected in [
        "webapp/inference/views.py:2: webapp.inference.views imports workers.serving.predict",
        "webapp/inference/views.py:3: webapp.inference.views imports torch",
        "workers/serving/predict.py:1: workers.serving.predict imports webapp.jobs.models",
        "workers/serving/predict.py:4: workers.serving.predict imports workers.adapters.tasks",
        "workers/datasets/common.py:2: workers.datasets.common imports django.conf",
        "models_zoo/hparams.py:2: models_zoo.hparams imports numpy",
        "models_zoo/hf/causal_lm.py:2: models_zoo.hf.causal_lm imports models_zoo.mlp",
        "models_zoo/kinds.py:1: models_zoo.kinds imports django (the pure runtime and models_zoo never import "
        "Django, webapp or workers.adapters; a contracts module imports only",
    ]:
        assert expected in text, text
    assert len(problems) == 8, text  # kinds -> contracts (not yet written) is allowed
    cycles = import_cycles(graph)
    assert len(cycles) == 1 and cycles[0].startswith(
        "import cycle: webapp.jobs.dispatch -> webapp.jobs.services -> webapp.jobs.dispatch "
        "(webapp/jobs/dispatch.py:2, webapp/jobs/services.py:5)"), cycles


def test_complexity_guard_names_the_function(tmp_path):
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(31))
    _tree(tmp_path, {
        "workers/training/loop.py": "def run(x):\n" + "".join(f"    if x == {i}:\n        return {i}\n"
                                                             for i in range(15)),
        "bench/load_test.py": "class A:\n    def main(self, x):\n" + branches.replace("    ", "        ", ) + "\n"
                              "def ok(x):\n    return x\n",
    })
    problems = complexity_problems(tmp_path)
    assert problems == ["bench/load_test.py:2 A.main: cyclomatic complexity 32 > 30",
                        "workers/training/loop.py:1 run: cyclomatic complexity 16 > 15"], problems
