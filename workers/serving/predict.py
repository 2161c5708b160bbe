"""Try a trained zoo model on one input (no Django).

`predict(artifact_dir, inputs, image=None)` loads the exported model (`config.json` +
`model.safetensors` + `vocab.json`, via `models_zoo.load_model`), prepares the input exactly as
the ingest + training code prepared the training data, and returns a JSON-able result:

    classification  {"type": "classes", "top": [{"label", "confidence"}, ...]}   (top 5)
    regression      {"type": "value", "value": float}                            (original units)
    language model  {"type": "text", "prompt": str, "generated": str}

Preprocessing, per dataset kind (the statistics come from config.json's "dataset" block):
    image     the ingest's own decoder (`workers.datasets.images._convert`: allow-listed formats,
              EXIF orientation, transparency on white, channels, squash to image_size with
              BICUBIC), then /255 and the training mean/std per channel. Pillow's
              DecompressionBombWarning is an error.
    text      the ingest's tokenizer (lower-cased word regex), the training vocabulary (unknown
              words → <unk>), the first max_len tokens, right-padded with <pad>.
    tabular   one value per raw column: numbers for numeric columns, one of the training
              categories for string columns (one-hot in the training order), then the training
              mean/std. A model of a dataset ingested with missing=impute takes an empty field:
              it gets the ingest's fill value (training median / most frequent) and its missing
              indicator is set, as the ingest did; otherwise an empty field is refused.
    sequence  exactly L comma-separated numbers, then the training mean/std (one scalar); with
              missing=impute an empty value gets its step's training median, and the missing
              channel (when the dataset has one) marks it.
    corpus    the prompt as character ids (training vocabulary) or UTF-8 bytes; generation with
              temperature / top-k / length.

Bad input raises `InputError` with a message for the user. Loaded models are kept in a small
LRU (per worker process), keyed by the directory and the weights file's mtime.
"""

from __future__ import annotations

import io
import json
import math
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

# The limits and the raw columns are contracts the web tier checks too: one definition.
from models_zoo.contracts import (
    MAX_GENERATE,
    MAX_IMAGE_BYTES,
    MAX_TEXT_CHARS,
    fill_values,
    raw_columns,
)
from models_zoo.kinds import kind_of

TOP_K = 5
CACHE_SIZE = 4


class InputError(ValueError):
    """A problem with the user's input, worded for the user."""


class Loaded:
    """A model in eval mode plus what its inputs need."""

    def __init__(self, directory: Path):
        from models_zoo.loading import load_model

        self.model, self.config = load_model(directory)
        self.info = self.config["dataset"]
        vocab_path = directory / "vocab.json"
        self.vocab = json.loads(vocab_path.read_text()) if vocab_path.exists() else None
        self.index = {t: i for i, t in enumerate(self.vocab)} if self.vocab is not None else None

    @property
    def kind(self) -> str:
        return kind_of(self.info)

    @property
    def task(self) -> str:
        return self.info["task"]


_cache: OrderedDict = OrderedDict()
_lock = threading.Lock()
stats = {"hits": 0, "loads": 0}


def load(directory: str | Path) -> Loaded:
    """The model of an artifact directory, from the LRU when its weights have not changed."""
    directory = Path(directory)
    weights = directory / "model.safetensors"
    if not weights.is_file() or not (directory / "config.json").is_file():
        raise InputError("this job has no exported model (model.safetensors and config.json)")
    key = (str(directory.resolve()), weights.stat().st_mtime_ns)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            stats["hits"] += 1
            return _cache[key]
    loaded = Loaded(directory)
    with _lock:
        stats["loads"] += 1
        _cache[key] = loaded
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


# -- preprocessing ---------------------------------------------------------------------------


def prepare_image(data: bytes, info: dict):
    """Image bytes → float tensor [1, C, H, W], as the training loop saw the cache."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from workers.datasets.images import ALLOWED_FORMATS, _convert

    if not data:
        raise InputError("the image file is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise InputError(f"the image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    side, channels = int(info["image_size"]), info["channels"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            arr = _convert(im, channels, side)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"the image is too large to decode safely (decompression bomb?): {exc}") from None
    except UnidentifiedImageError:
        raise InputError("not an image: upload a PNG, JPEG, BMP or WebP file") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"the image cannot be decoded: {str(exc)[:200]}") from None
    norm = info["normalization"]
    x = torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)[None]
    mean = torch.tensor(norm["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(norm["std"], dtype=torch.float32).view(1, -1, 1, 1).clamp(min=1e-6)
    return (x - mean) / std


def prepare_text(text: str, info: dict, index: dict) -> tuple:
    """A text → token ids [1, max_len] (long) and a note on unknown words."""
    import torch

    from workers.datasets.text import tokenize

    text = (text or "").strip()
    if not text:
        raise InputError("type a text")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"the text is longer than {MAX_TEXT_CHARS} characters")
    tokens = tokenize(text)
    if not tokens:
        raise InputError("the text has no words or punctuation the tokenizer can read")
    max_len = int(info.get("max_len") or info["input_shape"][0])
    unk = int((info.get("tokenizer") or {}).get("unk_id", 1))
    ids = [index.get(t, unk) for t in tokens[:max_len]]
    x = torch.zeros((1, max_len), dtype=torch.long)
    x[0, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    notes = []
    unknown = sorted({t for t in tokens[:max_len] if t not in index})
    if unknown:
        notes.append(f"{len(unknown)} word(s) not in the training vocabulary: {', '.join(unknown[:10])}")
    if len(tokens) > max_len:
        notes.append(f"only the first {max_len} of {len(tokens)} tokens were used (as in training)")
    return x, notes


def _number(text, what: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise InputError(f"{what}: {str(text)[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{what}: must be a finite number")
    return value


def prepare_features(values, info: dict):
    """Raw feature values (a {column: value} dict, a list, or a comma-separated line) → [1, F]."""
    return standardise_features([feature_row(values, info)], info)


def standardise_features(rows: list[list[float]], info: dict):
    """Encoded rows (`feature_row`) → [N, F] with the training mean/std."""
    import torch

    norm = info["normalization"]
    x = torch.tensor(rows, dtype=torch.float32)
    return (x - torch.tensor(norm["mean"], dtype=torch.float32)) / torch.tensor(norm["std"], dtype=torch.float32)


def feature_row(values, info: dict) -> list[float]:
    """One row of raw values encoded as the ingest did (numbers, one-hot categories, the fills
    and missing indicators of an imputing ingest), before standardisation; InputError if bad."""
    categorical = info.get("categorical") or {}
    columns = raw_columns(info)
    fills = fill_values(info)
    indicators = {c: spec["indicator"] for c, spec in ((info.get("missing") or {}).get("columns") or {}).items()}
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",")] if values.strip() else []
    if isinstance(values, dict):
        missing = [c for c in columns if str(values.get(c, "")).strip() == "" and c not in fills]
        if missing:
            raise InputError(f"missing value for {', '.join(repr(c) for c in missing[:10])}")
        values = [values.get(c, "") for c in columns]
    if not isinstance(values, list) or len(values) != len(columns):
        got = len(values) if isinstance(values, list) else 0
        raise InputError(f"expected {len(columns)} feature values ({', '.join(columns[:20])}), got {got}")
    row: list[float] = []
    empty: set[str] = set()
    for column, value in zip(columns, values):
        if str(value).strip() == "":
            if column not in fills:
                raise InputError(f"missing value for {column!r}")
            value = fills[column]  # the ingest's imputation of an empty cell
            empty.add(column)
        if column in categorical:
            cats = categorical[column]
            value = str(value).strip()
            if value not in cats:
                raise InputError(f"{column!r}: {value[:40]!r} is not one of the training values "
                                 f"({', '.join(cats[:20])})")
            row.extend(1.0 if c == value else 0.0 for c in cats)
        else:
            row.append(_number(value, repr(column)))
    # The missing indicators come after every other feature, in the ingest's order.
    row.extend(1.0 if column in empty else 0.0 for column in indicators)
    return row


def prepare_sequence(values, info: dict):
    """Comma-separated numbers (or a list) → [1, L, 1] scaled by the training mean/std."""
    import torch

    length = int(info["input_shape"][0])
    fills = fill_values(info)  # {step index: training median} when the ingest imputed
    if isinstance(values, str):
        fields = [v.strip() for v in values.replace("\n", ",").split(",")]
        if fills:  # an empty field is a missing value; a trailing comma is not
            values = fields[:-1] if len(fields) == length + 1 and not fields[-1] else fields
            values = [] if not any(values) else values
        else:
            values = [v for v in fields if v]
    if not values:
        raise InputError(f"enter {length} comma-separated numbers")
    if len(values) != length:
        raise InputError(f"expected {length} numbers (the training sequences' length), got {len(values)}")
    empty = [str(v).strip() == "" for v in values]
    nums = [fills[i] if e else _number(v, f"value {i + 1}") for i, (v, e) in enumerate(zip(values, empty))]
    norm = info["normalization"]
    x = torch.tensor(nums, dtype=torch.float32).view(1, length, 1)
    x = (x - float(norm["mean"][0])) / max(float(norm["std"][0]), 1e-12)
    if len(info["input_shape"]) > 1 and int(info["input_shape"][1]) == 2:  # the missing-indicator channel
        x = torch.cat([x, torch.tensor(empty, dtype=torch.float32).view(1, length, 1)], dim=-1)
    return x


def encode_prompt(prompt: str, loaded: Loaded) -> tuple[list[int], list[str]]:
    if not prompt:
        raise InputError("give a prompt")
    if len(prompt) > MAX_TEXT_CHARS:
        raise InputError(f"the prompt is longer than {MAX_TEXT_CHARS} characters")
    if loaded.index is None:  # byte level
        return list(prompt.encode("utf-8")), []
    ids = [loaded.index[c] for c in prompt if c in loaded.index]
    unknown = sorted({c for c in prompt if c not in loaded.index})
    if not ids:
        raise InputError("none of the prompt's characters occur in the training corpus")
    notes = [f"characters not in the training corpus were left out: {''.join(unknown[:20])!r}"] if unknown else []
    return ids, notes


def _decode(ids, loaded: Loaded) -> str:
    if loaded.vocab is None:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")
    return "".join(loaded.vocab[i] for i in ids if 0 <= i < len(loaded.vocab))


def _int_option(inputs: dict, name: str, default: int, low: int, high: int) -> int:
    raw = inputs.get(name, default)
    if raw in (None, ""):
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise InputError(f"{name}: {str(raw)[:20]!r} is not a whole number") from None
    if not low <= value <= high:
        raise InputError(f"{name} must be between {low} and {high}")
    return value


def _float_option(inputs: dict, name: str, default: float, low: float, high: float) -> float:
    raw = inputs.get(name, default)
    value = default if raw in (None, "") else _number(raw, name)
    if not low <= value <= high:
        raise InputError(f"{name} must be between {low} and {high}")
    return value


def prepare(loaded: Loaded, inputs: dict, image: bytes | None = None):
    """The model input for one try, and notes for the user."""
    kind, info = loaded.kind, loaded.info
    if kind == "image":
        if image is None:
            raise InputError("upload an image")
        return prepare_image(image, info), []
    if kind == "text":
        return prepare_text(inputs.get("text", ""), info, loaded.index or {})
    if kind == "tabular":
        return prepare_features(inputs.get("features", ""), info), []
    if kind == "sequence":
        return prepare_sequence(inputs.get("sequence", ""), info), []
    raise InputError(f"cannot try models of {kind!r} datasets")


# -- prediction ------------------------------------------------------------------------------


def predict(directory: str | Path, inputs: dict, image: bytes | None = None, seed: int | None = None) -> dict:
    import torch

    loaded = load(directory)
    model, info = loaded.model, loaded.info
    if loaded.task == "lm":
        length = _int_option(inputs, "length", 200, 1, MAX_GENERATE)
        temperature = _float_option(inputs, "temperature", 0.8, 0.0, 5.0)
        top_k = _int_option(inputs, "top_k", 0, 0, int(info.get("vocab_size", 65535)))
        ids, notes = encode_prompt(inputs.get("prompt", ""), loaded)
        g = torch.Generator().manual_seed(seed if seed is not None else torch.seed() & 0xFFFFFFFF)
        with torch.no_grad():
            out = model.generate(torch.tensor([ids], dtype=torch.long), length, temperature=temperature,
                                 top_k=top_k or None, generator=g)
        return {"type": "text", "prompt": _decode(ids, loaded), "generated": _decode(out[0, len(ids):].tolist(), loaded),
                "temperature": temperature, "top_k": top_k or None, "length": length, "notes": notes}
    x, notes = prepare(loaded, inputs, image)
    with torch.no_grad():
        out = model(x).float()
    if loaded.task == "classification":
        probs = out.softmax(1)[0]
        classes = loaded.config.get("class_names") or info.get("classes") or []
        k = min(TOP_K, probs.numel())
        conf, idx = probs.topk(k)
        top = [{"label": str(classes[i]) if i < len(classes) else str(i), "confidence": round(float(c), 6)}
               for c, i in zip(conf.tolist(), idx.tolist())]
        return {"type": "classes", "top": top, "notes": notes}
    norm = info["target_normalization"]
    return {"type": "value", "value": float(out[0, 0]) * norm["std"] + norm["mean"], "notes": notes}
