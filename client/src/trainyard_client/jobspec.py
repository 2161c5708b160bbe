"""Local check of a job file against the server's own form description (`/api/architectures/`):
the same field kinds and ranges the server enforces, so a typo or an out-of-range value is refused
with the field's name before anything is sent. The server checks again (it is the authority)."""

from __future__ import annotations

import math
from typing import Any

TOP_LEVEL = {"dataset", "architecture", "name", "model_config", "train_config", "priority",
             "min_gpu_memory_gb", "gpu_type"}


class SpecError(ValueError):
    """`errors` maps a dotted field name (`train_config.epochs`) to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def _number(meta: dict, raw: Any, whole: bool) -> str | None:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        return "must be a whole number" if whole else "must be a number"
    try:
        value = float(raw)
    except ValueError:
        return "must be a whole number" if whole else "must be a number"
    if not math.isfinite(value):
        return "must be a finite number"
    if whole and not value.is_integer():
        return "must be a whole number"
    return _range(meta, value)


def _range(meta: dict, value: float, prefix: str = "") -> str | None:
    if meta.get("min") is not None and value < meta["min"]:
        return f"{prefix}must be at least {meta['min']}"
    if meta.get("max") is not None and value > meta["max"]:
        return f"{prefix}must be at most {meta['max']}"
    return None


def _ints(meta: dict, raw: Any) -> str | None:
    items = raw if isinstance(raw, list) else [p for p in str(raw).replace(" ", "").split(",") if p]
    if any(isinstance(i, bool) or not str(i).lstrip("-").isdigit() for i in items):
        return "must be a comma-separated list of whole numbers"
    if len(items) > meta.get("max_items", 8):
        return f"at most {meta.get('max_items', 8)} values"
    for item in items:
        if problem := _range(meta, int(item), "each value "):
            return problem
    return None


def field_problem(meta: dict, raw: Any) -> str | None:
    """What is wrong with `raw` for the field described by `meta`, or None."""
    kind = meta.get("kind")
    if kind == "int":
        return _number(meta, raw, whole=True)
    if kind == "float":
        return _number(meta, raw, whole=False)
    if kind == "bool":
        ok = isinstance(raw, bool) or str(raw).strip().lower() in {"1", "0", "true", "false", "on", "off", "yes",
                                                                     "no", ""}
        return None if ok else "must be true or false"
    if kind == "choice":
        allowed = [c[0] for c in meta.get("choices") or []]
        return None if str(raw) in allowed else f"must be one of {', '.join(allowed)}"
    if kind == "ints":
        return _ints(meta, raw)
    return None


def _section(name: str, values: Any, fields: list[dict], errors: dict[str, str]) -> None:
    if values is None:
        return
    if not isinstance(values, dict):
        errors[name] = "must be a mapping of setting names to values"
        return
    described = {f["name"]: f for f in fields}
    for key, raw in values.items():
        if key not in described:
            errors[f"{name}.{key}"] = f"unknown setting (known: {', '.join(described)})"
        elif problem := field_problem(described[key], raw):
            errors[f"{name}.{key}"] = problem


def check_job(spec: Any, catalogue: dict, dataset_kind: str | None = None) -> dict:
    """The request body for POST /api/jobs/, or SpecError naming every bad field."""
    if not isinstance(spec, dict):
        raise SpecError({"job": "the job file must be a mapping (dataset, architecture, ...)"})
    errors: dict[str, str] = {}
    for key in spec:
        if key not in TOP_LEVEL:
            errors[str(key)] = f"unknown key (known: {', '.join(sorted(TOP_LEVEL))})"
    if not spec.get("dataset"):
        errors["dataset"] = "required: the dataset's id or name"
    archs = {a["name"]: a for a in catalogue.get("architectures", [])}
    arch = archs.get(str(spec.get("architecture", "")))
    if arch is None:
        errors["architecture"] = f"unknown architecture {spec.get('architecture')!r}; choose one of {', '.join(archs)}"
    else:
        _section("model_config", spec.get("model_config"), arch.get("model_config", []), errors)
        if dataset_kind is not None and dataset_kind not in arch.get("dataset_kinds", [dataset_kind]):
            errors["architecture"] = (f"{arch['name']} does not train on {dataset_kind} datasets "
                                      f"(it takes {', '.join(arch['dataset_kinds'])})")
    _section("train_config", spec.get("train_config"), catalogue.get("train_config", []), errors)
    for key in ("priority", "min_gpu_memory_gb"):
        if spec.get(key) is not None and (problem := _number({}, spec[key], whole=True)):
            errors[key] = problem
    if errors:
        raise SpecError(errors)
    return {k: v for k, v in spec.items() if v is not None}
