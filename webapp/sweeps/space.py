"""A sweep's search space, written against the settings' own schema (models_zoo.schema).

A space is JSON: `{"train.learning_rate": {"type": "float", "low": 1e-4, "high": 0.1, "log": true},
"model.dropout": {"type": "float", "low": 0, "high": 0.5}, "train.optimizer": {"type": "choice",
"choices": ["adam", "sgd_momentum"]}}`. Keys name a training setting (`train.`, hparams.TrainConfig)
or one of the architecture's (`model.`, its Config). Every range must lie inside the field's own
limits and every choice must be one the field accepts, so a trial's settings always validate.
Nothing here imports Django or Optuna.
"""

from __future__ import annotations

import math
from typing import Any

import models_zoo
from models_zoo.hparams import TASK_METRICS, TrainConfig
from models_zoo.schema import ConfigError, describe, inapplicable

TYPES = ("float", "int", "choice")
MAX_DIMENSIONS = 20
MAX_CHOICES = 50
# Which way each metric is optimised (the task's table says which ones it reports).
DIRECTIONS = {"loss": "minimize", "rmse": "minimize", "mae": "minimize", "perplexity": "minimize",
              "accuracy": "maximize", "f1": "maximize", "r2": "maximize"}


def direction_for(metric: str) -> str:
    """"minimize" or "maximize", from the metric's name (loss, rmse: minimise; accuracy, f1, r2: maximise)."""
    if metric not in DIRECTIONS:
        raise ConfigError({"metric": f"unknown metric {metric!r}; choose one of {', '.join(DIRECTIONS)}"})
    return DIRECTIONS[metric]


def check_metric(metric: str, task: str | None) -> dict[str, str]:
    """The metric must be one the dataset's task reports on its validation split."""
    if metric not in DIRECTIONS:
        return {"metric": f"unknown metric {metric!r}; choose one of {', '.join(DIRECTIONS)}"}
    if task in TASK_METRICS and metric not in TASK_METRICS[task]:
        return {"metric": f"{metric} is not reported for {task}; choose one of {', '.join(TASK_METRICS[task])}"}
    return {}


def never_applies(architecture: str, space: dict, base_model: dict, base_train: dict, context: dict) -> dict[str, str]:
    """{key: why} for the searched settings that apply in no trial: their condition fails on the
    base settings or the dataset, and depends on no searched setting. (One that depends on a
    searched one, such as momentum beside a searched optimizer, is dropped from the trials where it
    does not apply.)"""
    out = {}
    for prefix, cls, base in (("train", TrainConfig, base_train), ("model", models_zoo.get(architecture).config_cls,
                                                                     base_model)):
        meta = {f["name"]: f for f in describe(cls)}
        for name, why in inapplicable(cls, base, context).items():
            key = f"{prefix}.{name}"
            if key in space and not any(f"{prefix}.{k}" in space for k in meta[name]["applies_when"] or {}):
                out[key] = f"does nothing in this sweep: it {why}"
    return out


def fields_for(architecture: str) -> dict[str, dict]:
    """Every searchable setting, `train.<name>` and `model.<name>`, with its schema description."""
    out = {f"train.{f['name']}": f for f in describe(TrainConfig, json_values=True)}
    entry = models_zoo.get(architecture)
    out.update({f"model.{f['name']}": f for f in entry.describe() if f["kind"] != "str"})
    return out


def _choice_value(field: dict, raw: Any) -> Any:
    """A choice as the schema would take it, or ValueError."""
    kind = field["kind"]
    if kind == "choice":
        allowed = [c[0] for c in field["choices"]]
        if raw not in allowed:
            raise ValueError(f"{raw!r} is not one of {', '.join(allowed)}")
        return raw
    if kind == "bool":
        if not isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not true or false")
        return raw
    if kind == "ints":
        if not isinstance(raw, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            raise ValueError(f"{raw!r} is not a list of whole numbers")
        for v in raw:
            _within(field, v)
        return raw
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ValueError(f"{raw!r} is not a number")
    if kind == "int" and not float(raw).is_integer():
        raise ValueError(f"{raw!r} is not a whole number")
    _within(field, raw)
    return int(raw) if kind == "int" else float(raw)


def _within(field: dict, v: float) -> None:
    lo, hi = field.get("min"), field.get("max")
    if lo is not None and v < lo:
        raise ValueError(f"{v} is below the setting's minimum {lo}")
    if hi is not None and v > hi:
        raise ValueError(f"{v} is above the setting's maximum {hi}")


def _check_range(field: dict, spec: dict) -> dict:
    kind = field["kind"]
    if spec["type"] != kind:
        raise ValueError(f"{'an' if kind == 'int' else 'a'} {kind} setting takes type {kind!r} or 'choice', "
                         f"not {spec['type']!r}")
    extra = set(spec) - {"type", "low", "high", "log", "step"}
    if extra:
        raise ValueError(f"unknown keys {', '.join(sorted(extra))} (a range has low, high, log, step)")
    if "low" not in spec or "high" not in spec:
        raise ValueError("give low and high")
    low, high = spec["low"], spec["high"]
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number")
        if kind == "int" and not float(v).is_integer():
            raise ValueError(f"{name} must be a whole number for an int setting")
        try:
            _within(field, v)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    if not low < high:
        raise ValueError(f"low ({low}) must be below high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError("log must be true or false")
    if log and low <= 0:
        raise ValueError("a log-scale range needs low above 0")
    out = {"type": kind, "low": int(low) if kind == "int" else float(low),
           "high": int(high) if kind == "int" else float(high), "log": log}
    if "step" in spec:
        step = spec["step"]
        if log:
            raise ValueError("step and log cannot be combined")
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0 or \
                (kind == "int" and not float(step).is_integer()):
            raise ValueError("step must be a positive number (whole for an int setting)")
        out["step"] = int(step) if kind == "int" else float(step)
    return out


def _check_one(field: dict, spec: Any) -> dict:
    if not isinstance(spec, dict):
        raise ValueError("must be an object with a type")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ValueError(f"type must be one of {', '.join(TYPES)}")
    if kind != "choice":
        if field["kind"] not in ("int", "float"):
            raise ValueError(f"a {field['kind']} setting is searched with type 'choice' only")
        return _check_range(field, spec)
    if set(spec) - {"type", "choices"}:
        raise ValueError("a choice has only 'choices'")
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("choices must be a non-empty list")
    if len(choices) > MAX_CHOICES:
        raise ValueError(f"at most {MAX_CHOICES} choices")
    clean = [_choice_value(field, c) for c in choices]
    if len({repr(c) for c in clean}) != len(clean):
        raise ValueError("choices must differ")
    return {"type": "choice", "choices": clean}


def validate_space(architecture: str, space: Any) -> dict:
    """The clean space, or ConfigError naming each bad key (`space.<key>`) with the reason."""
    if not isinstance(space, dict) or not space:
        raise ConfigError({"space": "give at least one setting to search, e.g. "
                                    '{"train.learning_rate": {"type": "float", "low": 0.0001, "high": 0.1, "log": true}}'})
    try:
        fields = fields_for(architecture)
    except ConfigError as exc:
        raise ConfigError(exc.errors) from None
    errors: dict[str, str] = {}
    clean: dict[str, dict] = {}
    if len(space) > MAX_DIMENSIONS:
        errors["space"] = f"at most {MAX_DIMENSIONS} settings"
    for key, spec in space.items():
        if key not in fields:
            prefix = "train." if key.startswith("train.") else "model." if key.startswith("model.") else ""
            known = ", ".join(sorted(k for k in fields if k.startswith(prefix) or not prefix))
            errors[f"space.{key}"] = (f"unknown setting; searchable settings of {architecture} are: {known}"
                                      if prefix else "name a setting as train.<name> or model.<name>")
            continue
        try:
            clean[key] = _check_one(fields[key], spec)
        except ValueError as exc:
            errors[f"space.{key}"] = str(exc)
    if errors:
        raise ConfigError(errors)
    return clean


def propose(architecture: str, keys: list[str] | None = None) -> dict:
    """A starting space from the schema's limits and defaults: a float setting a decade either
    side of its default (log scale when it is positive), an int one from half to twice its
    default, every choice of a choice setting. `keys`: which settings (default: the usual
    suspects, learning rate and weight decay plus the architecture's numeric settings)."""
    fields = fields_for(architecture)
    if keys is None:
        keys = ["train.learning_rate", "train.weight_decay"] + [
            k for k, f in fields.items() if k.startswith("model.") and f["kind"] in ("float", "int")][:4]
    out = {}
    for key in keys:
        f = fields[key]
        lo, hi, d = f.get("min"), f.get("max"), f["default"]
        if f["kind"] == "float":
            if d and d > 0:
                low, high = d / 10, d * 10
                log = True
            else:  # a default of 0 (off): search up to a tenth of the limit, linearly
                low, high, log = (lo or 0.0), min(hi if hi is not None else 1.0, 0.1 * (hi or 1.0)), False
            low = max(low, lo) if lo is not None else low
            high = min(high, hi) if hi is not None else high
            if log and low <= 0:
                log = False
            if key == "train.weight_decay":
                low, high, log = 1e-6, 1e-2, True
            out[key] = {"type": "float", "low": low, "high": high, "log": log}
        elif f["kind"] == "int":
            low, high = max(1, d // 2), max(d * 2, 2)
            low = max(low, lo) if lo is not None else low
            high = min(high, hi) if hi is not None else high
            if low < high:
                out[key] = {"type": "int", "low": int(low), "high": int(high), "log": False}
        elif f["kind"] == "choice":
            out[key] = {"type": "choice", "choices": [c[0] for c in f["choices"]]}
        elif f["kind"] == "bool":
            out[key] = {"type": "choice", "choices": [False, True]}
    return out


def apply(base_model: dict, base_train: dict, params: dict) -> tuple[dict, dict]:
    """A trial's settings: the base settings with the trial's values over them."""
    model, train = dict(base_model), dict(base_train)
    for key, value in params.items():
        section, _, name = key.partition(".")
        (model if section == "model" else train)[name] = value
    return model, train
