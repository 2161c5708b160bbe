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
) -> Any:
    """Declare one configuration field. `kind` is int, float, str, bool, choice or ints."""
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
