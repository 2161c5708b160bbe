"""The dataset kinds registry: everything per kind in one place (no torch, no Django).

Like `models_zoo.REGISTRY` for architectures, `KINDS[name]` is a `Kind`: its label, the file
extensions it accepts, a typed options `Config` (built with `models_zoo.schema`, so the upload
form, the API and the ingest worker validate with the same class), the fields a try of its
models sends, its ingest module in `workers/datasets` and what its cache holds.

    form_options(kind, raw)   the web tier: form/API input -> the options stored on the Dataset
    ingest_arguments(kind, options)   the worker: stored options -> the ingest function's kwargs
    check_field_names(names, extra)   every upload path: an unknown field is refused, never ignored
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, ClassVar

from models_zoo.schema import ConfigError, param, validate

__all__ = ["IMAGE_SIZE_RANGE", "KINDS", "UPLOAD_FIELDS", "Kind", "OptionsError", "UnknownFields", "check_field_names",
           "form_options", "get", "ingest_arguments", "option_names"]

IMAGE_SIZE_RANGE = (8, 512)  # pixels per side; checked once, by the image Config below
TASKS = [("auto", "Auto"), ("classification", "Classification"), ("regression", "Regression")]
# The form's words for the image channels -> the Pillow mode the ingest converts to (auto: None).
CHANNELS = [("auto", "Auto (grayscale when every image is)"), ("grayscale", "Grayscale"), ("rgb", "RGB")]
CHANNEL_MODES = {"auto": None, "grayscale": "L", "rgb": "RGB"}
CHANNEL_ALIASES = {"l": "grayscale", "gray": "grayscale"}  # stored options hold the mode ("L")

VAL_MESSAGE = "validation fraction must be between 0 and 1 (exclusive)"
# Empty cells of tables and sequences: refused (the default), or imputed from the training rows.
MISSING = [("refuse", "Refuse empty cells"),
           ("impute", "Impute: median / most frequent of the training rows, plus a missing indicator")]


class OptionsError(ValueError):
    """Refused ingest options, one sentence for the user."""


class UnknownFields(OptionsError):
    """Upload fields that no upload path knows (a typo must not be silently ignored, as job
    settings are not): `unknown` lists them, `valid` every field the path accepts."""

    def __init__(self, unknown: list[str], valid: list[str]):
        self.unknown, self.valid = list(unknown), list(valid)
        hints = []
        for name in self.unknown:
            close = difflib.get_close_matches(name, self.valid, n=1, cutoff=0.7)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        what = "unknown field" if len(hints) == 1 else "unknown fields"
        super().__init__(f"{what} {', '.join(hints)}; the upload fields are: {', '.join(self.valid)}")


def _val_fraction(default: float) -> Any:
    return param(default, label="Validation fraction", min=0.0, max=1.0)


TEST_MESSAGE = "test fraction must be at least 0 and below 1, with validation + test below 1"


def _test_fraction() -> Any:
    return param(0.0, label="Test fraction", min=0.0, max=1.0,
                 help="seeded split only; default 0: no test split")


def _split_column() -> Any:
    return param("", label="Split column", help="default: a column named 'split' (train / val / test)")


def _open_interval(config) -> dict[str, str]:
    # The schema's bounds are inclusive; an empty split on either side is useless.
    if not 0.0 < config.val_fraction < 1.0:
        return {"val_fraction": VAL_MESSAGE}
    test = getattr(config, "test_fraction", 0.0)
    if not 0.0 <= test < 1.0 or config.val_fraction + test >= 1.0:
        return {"test_fraction": TEST_MESSAGE}
    return {}


class _Options:
    # Kept in the stored options even at their default (the dataset page shows them).
    RECORDED: ClassVar[tuple[str, ...]] = ("val_fraction",)
    # Accepted from the form but never stored nor passed to the ingest.
    FORM_ONLY: ClassVar[tuple[str, ...]] = ()
    # One message per field, for any bad value of it (the schema's words name no field).
    MESSAGES: ClassVar[dict[str, str]] = {
        "val_fraction": VAL_MESSAGE,
        "test_fraction": TEST_MESSAGE,
        "missing": "missing must be refuse or impute",
        "task": "task must be auto, classification or regression",
        "seed": "seed must be a whole number from 0",
    }

    def check(self) -> dict[str, str]:
        return _open_interval(self)


@dataclass(frozen=True)
class TableOptions(_Options):
    val_fraction: float = _val_fraction(0.2)
    label_column: str = param("", label="Label column", help="default: 'label' or the last column")
    task: str = param("auto", label="Task", choices=TASKS)
    seed: int = param(0, label="Split seed", min=0, max=2**31 - 1)
    split_column: str = _split_column()
    test_fraction: float = _test_fraction()
    missing: str = param("refuse", label="Missing values", choices=MISSING)


@dataclass(frozen=True)
class SequenceOptions(TableOptions):
    pass


@dataclass(frozen=True)
class TextOptions(_Options):
    FORM_ONLY: ClassVar[tuple[str, ...]] = ("task",)
    MESSAGES: ClassVar[dict[str, str]] = {
        **_Options.MESSAGES,
        "task": "text datasets are for classification; regression is for tables and sequences",
    }
    val_fraction: float = _val_fraction(0.2)
    label_column: str = param("", label="Label column", help="default: 'label' or the last column")
    text_column: str = param("", label="Text column", help="default: 'text', 'sentence' or 'review'")
    task: str = param("auto", label="Task", choices=TASKS[:2])
    seed: int = param(0, label="Split seed", min=0, max=2**31 - 1)
    split_column: str = _split_column()
    test_fraction: float = _test_fraction()


@dataclass(frozen=True)
class ImageOptions(_Options):
    MESSAGES: ClassVar[dict[str, str]] = {
        **_Options.MESSAGES,
        "channels": "channels must be auto, grayscale or rgb",
        "image_size": f"image size must be a whole number of pixels between {IMAGE_SIZE_RANGE[0]} and "
                      f"{IMAGE_SIZE_RANGE[1]}",
    }
    val_fraction: float = _val_fraction(0.2)
    image_size: int | None = param(None, label="Image size (px)", kind="int", min=IMAGE_SIZE_RANGE[0],
                                   max=IMAGE_SIZE_RANGE[1], help="default: the most common size")
    channels: str = param("auto", label="Channels", choices=CHANNELS)
    seed: int = param(0, label="Split seed", min=0, max=2**31 - 1)
    test_fraction: float = _test_fraction()


@dataclass(frozen=True)
class CorpusOptions(_Options):
    RECORDED: ClassVar[tuple[str, ...]] = ("val_fraction", "level")
    MESSAGES: ClassVar[dict[str, str]] = {**_Options.MESSAGES, "level": "level must be char or byte"}
    val_fraction: float = _val_fraction(0.1)
    level: str = param("char", label="Tokens", choices=[("char", "Characters"), ("byte", "Bytes")])


@dataclass(frozen=True)
class ChatOptions(_Options):
    val_fraction: float = _val_fraction(0.1)
    seed: int = param(0, label="Split seed", min=0, max=2**31 - 1)


TABLE_EXTENSIONS = frozenset({".csv", ".tsv", ".tab", ".txt"})
SUPERVISED_CACHE = ("info.json", "X_train.npy", "y_train.npy", "X_val.npy", "y_val.npy")


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    extensions: frozenset[str]
    options: type
    ingest_module: str  # in workers/datasets
    ingest_function: str
    cache_files: tuple[str, ...]
    # What the try form sends for a model of this kind (image: the uploaded file only).
    try_fields: tuple[str, ...]
    # Words in messages (an architecture "does not accept text classification datasets").
    noun: str = ""
    # The architecture a new job on such a dataset starts with ("": the first that accepts it).
    default_architecture: str = ""


KINDS: dict[str, Kind] = {k.name: k for k in [
    Kind("tabular", "Tabular (CSV/TSV)", TABLE_EXTENSIONS, TableOptions, "tabular", "ingest_csv",
         SUPERVISED_CACHE, ("features",), "tabular"),
    Kind("image", "Images (ZIP of class folders)", frozenset({".zip"}), ImageOptions, "images",
         "ingest_image_zip", SUPERVISED_CACHE, (), "image", default_architecture="cnn"),
    Kind("text", "Text classification (CSV/TSV/JSONL)",
         frozenset({".csv", ".tsv", ".tab", ".jsonl", ".json", ".ndjson"}), TextOptions, "text", "ingest_text",
         (*SUPERVISED_CACHE, "vocab.json", "val_texts.json"), ("text",), "text classification"),
    Kind("corpus", "Text corpus for language modelling (.txt)", frozenset({".txt", ".text", ".md"}),
         CorpusOptions, "corpus", "ingest_corpus", ("info.json", "train.npy", "val.npy", "vocab.json"),
         ("prompt", "temperature", "top_k", "length"), "text corpus"),
    Kind("chat", "Instruction / chat (JSONL: messages or prompt/response)", frozenset({".jsonl", ".ndjson"}),
         ChatOptions, "chat", "ingest_chat", ("info.json", "train.jsonl", "val.jsonl"), ("prompt",),
         "instruction / chat"),
    Kind("sequence", "Numeric sequences (CSV)", TABLE_EXTENSIONS, SequenceOptions, "sequences",
         "ingest_sequences", SUPERVISED_CACHE, ("sequence",), "numeric sequence"),
]}


def kind_of(info: dict) -> str:
    """The kind of a dataset from its cache's info.json (caches written before `kind` existed
    are tabular)."""
    return info.get("kind", "tabular")


# The upload's own fields besides the file and the kind's options (each path adds its transport
# fields: the form's `file` / `upload`, tus's `filename`).
UPLOAD_FIELDS = ("name", "description", "kind")


def option_names() -> tuple[str, ...]:
    """Every option some kind takes, each once, in the order the kinds declare them: the upload
    form's, the API's and tus metadata's option fields."""
    names: dict[str, None] = {}
    for k in KINDS.values():
        for f in dataclasses.fields(k.options):
            names.setdefault(f.name, None)
    return tuple(names)


def check_field_names(names, extra: tuple[str, ...] = ()) -> None:
    """Refuse (UnknownFields) any of `names` that is neither one of `extra` (the path's
    transport fields), UPLOAD_FIELDS nor an option of some kind."""
    valid = [*extra, *UPLOAD_FIELDS, *option_names()]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise UnknownFields(unknown, valid)


def _is_default_elsewhere(name: str, value: Any) -> bool:
    """Whether `value` is the default of option `name` in the kinds that have it (the form sends
    every kind's fields, the selects at their first choice: "auto", "char")."""
    for k in KINDS.values():
        for f in dataclasses.fields(k.options):
            if f.name != name:
                continue
            if str(value).strip().lower() == str(f.default).lower():
                return True
            if isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
                try:
                    if float(value) == float(f.default):
                        return True
                except (TypeError, ValueError):
                    pass
    return False


def get(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise OptionsError(f"unknown dataset kind {name!r}; choose one of {', '.join(KINDS)}") from None


def _validate(cls: type, data: dict) -> Any:
    if "channels" in data:
        value = str(data["channels"]).strip().lower()
        data["channels"] = CHANNEL_ALIASES.get(value, value)
    try:
        return validate(cls, data)
    except ConfigError as exc:
        name, message = next(iter(exc.errors.items()))
        raise OptionsError(cls.MESSAGES.get(name, f"{name}: {message}")) from None


def _stored(config) -> dict:
    out: dict = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in config.FORM_ONLY or (value == f.default and f.name not in config.RECORDED):
            continue
        out[f.name] = CHANNEL_MODES[value] if f.name == "channels" else value
    return out


def form_options(kind: str, raw: dict) -> dict:
    """The options to store on a new Dataset of `kind`, from form or API input; OptionsError.

    The form sends every kind's fields: empty ones are left out, and so are another kind's at
    their default; another kind's option with a value of its own is refused (it would do
    nothing), as is a name no kind knows. Text is stripped and cut at 200 characters.
    """
    entry = get(kind)
    names = [f.name for f in dataclasses.fields(entry.options)]
    data = {}
    for key, value in raw.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if key not in names:
            check_field_names([key])
            if _is_default_elsewhere(key, value):
                continue
            raise OptionsError(f"{key} is not an option of {entry.noun or kind} datasets; their options are: "
                               f"{', '.join(n for n in names if n not in entry.options.FORM_ONLY)}")
        data[key] = value.strip()[:200] if isinstance(value, str) else value
    return _stored(_validate(entry.options, data))


def ingest_arguments(kind: str, options: dict) -> dict:
    """The keyword arguments of the kind's ingest function for stored `options` (validated again
    with the same Config: an option the form could not have produced is refused)."""
    config = _validate(get(kind).options, dict(options))
    kwargs = {}
    for f in dataclasses.fields(config):
        if f.name in config.FORM_ONLY:
            continue
        value = getattr(config, f.name)
        if f.name == "channels":
            value = CHANNEL_MODES[value]
        elif f.name == "task" and value == "auto" or f.name in ("label_column", "text_column", "split_column") \
                and not value:
            value = None
        kwargs[f.name] = value
    return kwargs
