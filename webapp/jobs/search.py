"""The jobs search syntax: a pure parser (no Django), applied in the database by organise.py.

A query is whitespace-separated terms; a term with spaces goes in double quotes:

    learning_rate<0.01 accuracy>0.9 optimizer=adamw tag:baseline "wide net"

- `name<op>value`, op one of `<  <=  >  >=  =  !=`: a comparison. `<`, `<=`, `>`, `>=` need a
  number; `=` / `!=` also take `true` / `false` or a word (quoted when it has spaces).
- `tag:NAME`: jobs with that tag (exactly).
- anything else: free text, matched (case-insensitively, every word) against the job's name and tags.

Names resolve, in this order:
- `model.X`: the architecture's setting X; `train.X` or a bare training setting (`learning_rate`,
  `batch_size`, `seed`...): the job's training settings (the values it ran with).
- a bare metric name (`accuracy`, `loss`, `f1`, `r2`, `mae`, ...) or `val.X`: the job's validation
  value. For a finished job that is its final model's (the metrics its page shows); for a running
  job the latest evaluated epoch's.
- `best.X`: the best validation value of any epoch so far (lowest for loss, mse, mae, rmse,
  perplexity and *_loss; highest otherwise). `test.X`: the test split's, evaluated once at the end.
- a bare name of an architecture's setting (`hidden_sizes`, `dropout`...): as `model.X`.
A job without the value (another architecture, not evaluated yet) never matches a comparison.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

MAX_LENGTH = 500
MAX_TERMS = 20
OPS = ("<=", ">=", "!=", "<", ">", "=")
ORDERING = ("<", "<=", ">", ">=")
# Where each prefix looks: a JSON field of the job and the path inside it.
SOURCES = {"model": "model_config", "train": "train_config", "val": "validation", "metric": "validation",
           "best": "best", "test": "test"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TERM = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=|!=|<|>|=)(.*)", re.S)
_TAG = re.compile(r"[\w.\-]{1,40}")


class SearchError(ValueError):
    """A query that cannot be read; the message says what is wrong and how to write it."""


@dataclass(frozen=True)
class Condition:
    source: str  # "train_config", "model_config", "validation", "best", "test"
    key: str
    op: str
    value: float | bool | str
    text: str  # the term as written, for messages


@dataclass
class Query:
    conditions: list[Condition] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.conditions or self.words or self.tags)


@dataclass(frozen=True)
class Names:
    """The names a bare term may mean: training settings, metrics, architecture settings."""

    train: frozenset[str]
    metrics: frozenset[str]
    model: frozenset[str]


def _tokens(q: str) -> list[str]:
    """Whitespace-separated tokens; a quoted stretch (spaces kept) belongs to the token it
    touches, so `"wide net"` and `name="wide net"` are one token each."""
    if q.count('"') % 2:
        raise SearchError('a quote is not closed: put a second " after the quoted words')
    out, cur, quoted = [], [], False
    for ch in q + " ":
        if ch == '"':
            quoted = not quoted
        elif ch.isspace() and not quoted:
            if cur:
                out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    return out


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if v == v and v not in (float("inf"), float("-inf")) else None


def _value(raw: str, op: str, term: str) -> float | bool | str:
    raw = raw.strip()
    if raw == "":
        raise SearchError(f"“{term}”: give a value after {op}, e.g. learning_rate<0.01")
    number = _number(raw)
    if op in ORDERING:
        if number is None:
            raise SearchError(f"“{term}”: {op} compares numbers; “{raw}” is not a number")
        return number
    if number is not None:
        return number
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw


def _suggest(name: str, names: Names) -> str:
    close = difflib.get_close_matches(name, sorted(names.train | names.metrics | names.model), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def resolve(name: str, names: Names) -> tuple[str, str]:
    """(source, key) of a term's name (see the module's docstring), or SearchError."""
    prefix, dot, key = name.partition(".")
    if dot:
        if prefix not in SOURCES or not _NAME.fullmatch(key):
            raise SearchError(f"“{name}”: a prefixed name is model.X, train.X, val.X, best.X or test.X")
        source = SOURCES[prefix]
        if source == "train_config" and key not in names.train:
            raise SearchError(f"“{name}”: there is no training setting {key}{_suggest(key, names)}")
        if source == "model_config" and key not in names.model:
            raise SearchError(f"“{name}”: no architecture has a setting {key}{_suggest(key, names)}")
        return source, key
    if name in names.train:
        return "train_config", name
    if name in names.metrics:
        return "validation", name
    if name in names.model:
        return "model_config", name
    raise SearchError(f"unknown name “{name}”{_suggest(name, names)} (a training setting such as learning_rate, "
                      "model.<setting>, a metric such as accuracy or loss, best.<metric> or test.<metric>)")


def parse(q: str, names: Names) -> Query:
    """The query `q` as conditions, tags and free words; SearchError says what is wrong."""
    q = (q or "").strip()
    if len(q) > MAX_LENGTH:
        raise SearchError(f"the search is {len(q)} characters long; at most {MAX_LENGTH}")
    query = Query()
    tokens = _tokens(q)
    if len(tokens) > MAX_TERMS:
        raise SearchError(f"the search has {len(tokens)} terms; at most {MAX_TERMS}")
    for token in tokens:
        if token.lower().startswith("tag:"):
            tag = token[4:].strip().lower()
            if not _TAG.fullmatch(tag):
                raise SearchError(f"“{token}”: a tag is 1 to 40 letters, digits, . _ or -")
            query.tags.append(tag)
            continue
        m = _TERM.fullmatch(token)
        if m is None:
            if token[:1] in "<>=!" or any(op in token for op in OPS):
                raise SearchError(f"“{token}”: write a comparison as name<op>value, e.g. accuracy>=0.9 "
                                  "(op: < <= > >= = !=)")
            if token:
                query.words.append(token)
            continue
        name, op, raw = m.groups()
        if raw[:1] and raw[:1] in "<>=!":
            raise SearchError(f"“{token}”: one operator per term (< <= > >= = !=)")
        source, key = resolve(name, names)
        query.conditions.append(Condition(source, key, op, _value(raw, op, token), token))
    return query
