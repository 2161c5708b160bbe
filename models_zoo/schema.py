"""Typed, validated configuration dataclasses that also describe their own web form.

A Config is a frozen dataclass whose fields are declared with `param(...)`. The web tier turns
the metadata into form fields; `validate()` turns user input (form strings or JSON) into a
Config or a dict of per-field error messages. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


def param(
    default: Any,
    *,
    label: str,
    kind: str | None = None,
    min: float | None = None,  # noqa: A002 - mirrors the form attribute
    max: float | None = None,  # noqa: A002
    choices: list[tuple[str, str]] | None = None,
    help: str = "",  # noqa: A002
    max_items: int = 8,
    applies_when: dict[str, tuple] | None = None,
) -> Any:
    """Declare one configuration field. `kind` is int, float, str, bool, choice or ints.

    `applies_when` says when the setting does anything, as {name: allowed values}: every name
    (another field of the same Config, or a context key of `CONTEXT`: the dataset's task and
    kind, whether a CUDA worker is live) must hold one of its values. The form shows the
    setting only then, and a job stores it only then (`settle`, `applicable_json`)."""
    if kind is None:
        if choices:
            kind = "choice"
        elif isinstance(default, bool):
            kind = "bool"
        elif isinstance(default, int):
            kind = "int"
        elif isinstance(default, float):
            kind = "float"
        elif isinstance(default, tuple):
            kind = "ints"
        else:
            kind = "str"
    meta = {
        "label": label,
        "kind": kind,
        "min": min,
        "max": max,
        "choices": choices,
        "help": help,
        "max_items": max_items,
        "applies_when": {k: list(v) for k, v in applies_when.items()} if applies_when else None,
    }
    return dataclasses.field(default=default, metadata=meta)


class ConfigError(ValueError):
    """Raised with a dict of field name -> message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def describe(config_cls: type, *, json_values: bool = False) -> list[dict]:
    """The form description of a Config class: one dict per field.

    A list default is the form's text ("64,64") unless `json_values`, for the API: then it is
    the JSON list (`[64, 64]`) that validate() accepts and jobs store."""
    out = []
    for f in dataclasses.fields(config_cls):
        meta = dict(f.metadata)
        default = f.default
        if meta["kind"] == "ints":
            default = list(default) if json_values else ",".join(str(v) for v in default)
        out.append({"name": f.name, "default": default, **meta})
    return out


# One parser per field kind: each turns a form string or a JSON value into the field's value,
# or raises ValueError with the message the form shows next to the field.

def _in_range(meta: dict, value: Any) -> Any:
    if meta["min"] is not None and value < meta["min"]:
        raise ValueError(f"must be at least {meta['min']}")
    if meta["max"] is not None and value > meta["max"]:
        raise ValueError(f"must be at most {meta['max']}")
    return value


def _parse_bool(meta: dict, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if str(raw).strip().lower() in {"1", "true", "on", "yes"}:
        return True
    if str(raw).strip().lower() in {"0", "false", "off", "no", ""}:
        return False
    raise ValueError("must be true or false")


def _parse_int(meta: dict, raw: Any) -> int:
    # JSON true is an int to Python, and 2.5 would truncate silently: both are refused.
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise ValueError("must be a whole number")
    try:
        value = int(str(raw).strip()) if not isinstance(raw, (int, float)) else int(raw)
    except ValueError:
        raise ValueError("must be a whole number") from None
    return _in_range(meta, value)


def _parse_float(meta: dict, raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("must be a number")
    try:
        value = float(str(raw).strip()) if not isinstance(raw, (int, float)) else float(raw)
    except ValueError:
        raise ValueError("must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    return _in_range(meta, value)


def _parse_choice(meta: dict, raw: Any) -> str:
    value = str(raw)
    allowed = [c[0] for c in meta["choices"]]
    if value not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}")
    return value


def _parse_ints(meta: dict, raw: Any) -> tuple[int, ...]:
    items = raw if isinstance(raw, (list, tuple)) else [p for p in str(raw).replace(" ", "").split(",") if p]
    parsed = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError("must be a comma-separated list of whole numbers")
        try:
            parsed.append(int(item))
        except (TypeError, ValueError):
            raise ValueError("must be a comma-separated list of whole numbers") from None
    if len(parsed) > meta["max_items"]:
        raise ValueError(f"at most {meta['max_items']} values")
    for v in parsed:
        if meta["min"] is not None and v < meta["min"]:
            raise ValueError(f"each value must be at least {meta['min']}")
        if meta["max"] is not None and v > meta["max"]:
            raise ValueError(f"each value must be at most {meta['max']}")
    return tuple(parsed)


def _parse_str(meta: dict, raw: Any) -> str:
    return str(raw)


_PARSERS: dict[str, Callable[[dict, Any], Any]] = {
    "bool": _parse_bool, "int": _parse_int, "float": _parse_float, "choice": _parse_choice, "ints": _parse_ints,
}


def _parse_one(meta: dict, raw: Any) -> Any:
    return _PARSERS.get(meta["kind"], _parse_str)(meta, raw)


def validate(config_cls: type, data: dict | None) -> Any:
    """Build a Config from user input, or raise ConfigError naming each bad field.

    Missing fields take their defaults; unknown fields are an error (a typo must not be
    silently ignored). After field checks, a class-level `check(self) -> dict` may add
    cross-field errors.
    """
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    errors: dict[str, str] = {}
    for name in data:
        if name not in fields:
            errors[name] = "unknown setting"
    values = {}
    for name, f in fields.items():
        if name not in data:
            continue
        try:
            values[name] = _parse_one(dict(f.metadata), data[name])
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise ConfigError(errors)
    config = config_cls(**values)
    check: Callable | None = getattr(config, "check", None)
    if check is not None:
        more = check()
        if more:
            raise ConfigError(more)
    return config


def to_json(config: Any) -> dict:
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


# -- applicability: which settings do anything, given the others and the job's context ----------

# What a job's settings may depend on besides each other, and how a refusal words each.
CONTEXT = {
    "task": "{allowed} datasets (this one is {actual})",
    "kind": "{allowed} datasets (this one holds {actual} data)",
    "cuda": "a worker with a CUDA GPU (every live worker is CPU only)",
}


def _allowed_words(meta: dict | None, allowed: list) -> str:
    labels = dict((meta or {}).get("choices") or [])
    return " or ".join(str(labels.get(v, v)) for v in allowed)


def _condition_failed(config_cls: type, meta: dict, values: dict, context: dict) -> str:
    """Why the field described by `meta` does not apply ("" when it does). A context key whose
    value is unknown (None, absent) never hides a setting."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    for key, allowed in (meta.get("applies_when") or {}).items():
        if key in fields:
            actual = values.get(key, fields[key].default)
            if actual not in allowed:
                other = fields[key].metadata
                return (f"applies only when {other['label']} is {_allowed_words(other, allowed)} "
                        f"(here: {_allowed_words(other, [actual])})")
        elif context.get(key) is not None and context[key] not in allowed:
            template = CONTEXT.get(key, "{allowed} (here: {actual})")
            return "applies only to " + template.format(allowed=" or ".join(map(str, allowed)), actual=context[key])
    return ""


def inapplicable(config_cls: type, values: dict, context: dict | None = None) -> dict[str, str]:
    """{field: why it does nothing} for the fields of `config_cls` that do not apply when the
    other fields hold `values` (raw or clean; absent ones at their defaults) in `context`."""
    context = context or {}
    out = {}
    for f in dataclasses.fields(config_cls):
        why = _condition_failed(config_cls, dict(f.metadata), values, context)
        if why:
            out[f.name] = why
    return out


def settle(config_cls: type, data: dict | None, context: dict | None = None, *,
           given: set[str] | None = None, strict: bool = True) -> tuple[dict, dict[str, str]]:
    """(`data` without the settings that do not apply, {field: message} of refused ones).

    A setting that does not apply is dropped when it equals its default or was not among
    `given` (a default filled in for it, not the user's); a value of the user's own is refused
    with the reason (`strict`), or dropped (not `strict`: an older job's stored settings, which
    did nothing when it ran). A value that does not parse is left for `validate` to report."""
    data = dict(data or {})
    given = set(data) if given is None else set(given)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    errors: dict[str, str] = {}
    for name, why in inapplicable(config_cls, data, context).items():
        if name not in data:
            continue
        if name not in given or not strict:
            del data[name]
            continue
        try:
            value = _parse_one(dict(fields[name].metadata), data[name])
        except ValueError:
            continue
        if value == fields[name].default:
            del data[name]
        else:
            errors[name] = f"{why}; remove it or leave it at {_shown(fields[name].default)}"
    return data, errors


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def applicable_json(config: Any, context: dict | None = None, keys=None) -> dict:
    """`to_json(config)` with only the settings that apply (and, given `keys`, only those among
    them): what a job stores and what its page and model card show."""
    out = to_json(config)
    skip = inapplicable(type(config), out, context)
    return {k: v for k, v in out.items() if k not in skip and (keys is None or k in keys)}


def shown(config_cls: type | None, stored: dict, context: dict | None = None) -> dict:
    """The stored settings of a job that apply (a job stored before applicability was recorded
    keeps every field; its page and model card show only the ones that did something)."""
    if config_cls is None:
        return dict(stored)
    skip = inapplicable(config_cls, stored, context)
    return {k: v for k, v in stored.items() if k not in skip}
