"""Try a fine-tuned Hugging Face model (no Django): the job's model.zip, loaded by transformers.

model.zip holds `model/` (full fine-tuning, or a LoRA adapter merged into its base) and/or
`adapter/` (a PEFT adapter). `model/` is loaded when it is there; otherwise the base model (the
folder `base()` returns: the caller resolves the job's `local:NAME` or Hub id) with
`PeftModel.from_pretrained(base, adapter/)`. Loaded models share the zoo's per-process LRU
(`workers.serving.predict`), keyed by the ZIP's path and mtime; the ZIP is unpacked into a
temporary folder that is gone once the weights are in memory.

Results, as the zoo's:
    classification  {"type": "classes", "top": [{"label", "confidence"}, ...]}   (top 5)
    causal LM       {"type": "text", "prompt", "generated", "temperature", "top_k", "top_p",
                     "max_new_tokens"}; `on_text(offset, text)` receives the answer while it is
                    generated, a batch of tokens at most every `interval` seconds.
"""

from __future__ import annotations

import io
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import Callable

from models_zoo.contracts import MAX_GENERATE, MAX_IMAGE_BYTES, MAX_TEXT_CHARS, PICKLE_SUFFIXES
from workers.serving import predict as zoo
from workers.serving.predict import InputError

TOP_K = zoo.TOP_K
STREAM_INTERVAL = 0.1  # seconds between two token frames: ~10 websocket frames a second at most
PARTS = ("model", "adapter")


class LoadedHF:
    """A fine-tuned transformers model in eval mode, its tokenizer or image processor."""

    def __init__(self, model, processor, task: str, source: str):
        self.model, self.processor, self.task, self.source = model, processor, task, source


def _extract(zip_path: Path, out: Path) -> set[str]:
    """Unpack model/ and adapter/ (what the runner wrote: no pickles, no other folders)."""
    found = set()
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            parts = info.filename.split("/")
            if info.is_dir() or parts[0] not in PARTS or len(parts) < 2 or ".." in parts or info.filename.startswith("/"):
                continue
            if info.filename.lower().endswith(PICKLE_SUFFIXES):
                continue
            zf.extract(info, out)
            found.add(parts[0])
    return found


def _auto(task: str):
    import transformers as tf

    return {"text_classification": tf.AutoModelForSequenceClassification, "causal_lm": tf.AutoModelForCausalLM,
            "image_classification": tf.AutoModelForImageClassification}[task]


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _load(zip_path: Path, task: str, base: Callable[[], Path] | None, classes: list[str]) -> LoadedHF:
    import transformers as tf

    common = {"trust_remote_code": False}
    with tempfile.TemporaryDirectory(prefix="trainyard-try-") as tmp:
        parts = _extract(zip_path, Path(tmp))
        if "model" in parts:
            folder = Path(tmp) / "model"
            model = _auto(task).from_pretrained(str(folder), use_safetensors=True, **common)
            source = "model"
        elif "adapter" in parts:
            folder = Path(tmp) / "adapter"
            model = _adapted(task, folder, base, classes)
            source = "adapter"
        else:
            raise InputError("this job's model.zip holds neither model/ nor adapter/")
        if task == "image_classification":  # tokenizers and processors hold no weights
            processor = tf.AutoImageProcessor.from_pretrained(str(folder), **common)
        else:
            processor = tf.AutoTokenizer.from_pretrained(str(folder), **common)
    return LoadedHF(model.to(_device()).eval(), processor, task, source)


def _adapted(task: str, adapter: Path, base: Callable[[], Path] | None, classes: list[str]):
    from peft import PeftModel

    if base is None:
        raise InputError("this job exported a LoRA adapter only, and its base model is not available")
    kwargs: dict = {}
    if task != "causal_lm":
        if not classes:
            raise InputError("the adapter's classes are unknown (the job's dataset is gone)")
        kwargs = {"num_labels": len(classes), "id2label": dict(enumerate(classes)),
                  "label2id": {c: i for i, c in enumerate(classes)}}
    folder = base()
    model = _auto(task).from_pretrained(str(folder), use_safetensors=True, trust_remote_code=False, **kwargs)
    # The adapter folder is the job's own output: safetensors weights, no code of its own.
    return PeftModel.from_pretrained(model, str(adapter), use_safetensors=True, trust_remote_code=False)


def load(artifacts_dir: str | Path, task: str, base: Callable[[], Path] | None = None,
         classes: list[str] | None = None) -> LoadedHF:
    """The model of a job's model.zip, from the shared LRU while the ZIP is unchanged."""
    zip_path = Path(artifacts_dir) / "model.zip"
    if not zip_path.is_file():
        raise InputError("this job has no exported model (model.zip)")
    key = ("hf", str(zip_path.resolve()), zip_path.stat().st_mtime_ns)
    with zoo._lock:
        if key in zoo._cache:
            zoo._cache.move_to_end(key)
            zoo.stats["hits"] += 1
            return zoo._cache[key]
    loaded = _load(zip_path, task, base, [str(c) for c in classes or []])
    with zoo._lock:
        zoo.stats["loads"] += 1
        zoo._cache[key] = loaded
        while len(zoo._cache) > zoo.CACHE_SIZE:
            zoo._cache.popitem(last=False)
    return loaded


# -- classifiers --------------------------------------------------------------------------------------
def _top(logits, model) -> list[dict]:
    probs = logits.float().softmax(-1)[0]
    labels = getattr(model.config, "id2label", None) or {}
    conf, idx = probs.topk(min(TOP_K, probs.numel()))
    return [{"label": str(labels.get(i, labels.get(str(i), i))), "confidence": round(float(c), 6)}
            for c, i in zip(conf.tolist(), idx.tolist())]


def _classify_text(loaded: LoadedHF, text: str, max_length: int) -> dict:
    import torch

    text = (text or "").strip()
    if not text:
        raise InputError("type a text")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"the text is longer than {MAX_TEXT_CHARS} characters")
    tok = loaded.processor
    enc = tok(text, truncation=True, max_length=max_length, return_tensors="pt")
    notes = []
    if len(tok(text)["input_ids"]) > max_length:
        notes.append(f"only the first {max_length} tokens were used (the job's max length, as in training)")
    with torch.no_grad():
        logits = loaded.model(**{k: v.to(loaded.model.device) for k, v in enc.items()}).logits
    return {"type": "classes", "top": _top(logits, loaded.model), "notes": notes}


def _classify_image(loaded: LoadedHF, data: bytes | None, info: dict) -> dict:
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from workers.datasets.images import ALLOWED_FORMATS, _convert
    from workers.hf.data import ImageCollator

    if not data:
        raise InputError("upload an image")
    if len(data) > MAX_IMAGE_BYTES:
        raise InputError(f"the image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    # As in training: the ingest's decoder at the dataset's size and channels, then the processor.
    channels, side = info.get("channels") or "RGB", int(info.get("image_size") or 224)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            arr = _convert(Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS), channels, side)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"the image is too large to decode safely (decompression bomb?): {exc}") from None
    except UnidentifiedImageError:
        raise InputError("not an image: upload a PNG, JPEG, BMP or WebP file") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"the image cannot be decoded: {str(exc)[:200]}") from None
    model = loaded.model
    pixels = ImageCollator(loaded.processor, int(getattr(model.config, "num_channels", 3))).pixels([np.asarray(arr)])
    with torch.no_grad():
        logits = model(pixel_values=pixels.to(model.device, dtype=next(model.parameters()).dtype)).logits
    return {"type": "classes", "top": _top(logits, model), "notes": []}


# -- language models ----------------------------------------------------------------------------------
class TokenStream:
    """transformers' streamer interface (`put(ids)`, `end()`): decodes the answer so far and hands
    `on_text(offset, new_text)` what was added, at most every `interval` seconds (a token per frame
    would be one websocket message per token). An incomplete UTF-8 character at the end waits."""

    def __init__(self, tokenizer, prompt_len: int, on_text: Callable[[int, str], None] | None,
                 interval: float = STREAM_INTERVAL):
        self.tokenizer, self.prompt_len, self.on_text, self.interval = tokenizer, prompt_len, on_text, interval
        self.ids: list[int] = []
        self.sent = ""
        self.skip_prompt = True
        self.last = time.monotonic()
        self.frames = 0

    def put(self, value) -> None:
        ids = value.reshape(-1).tolist()
        if self.skip_prompt:  # generate() puts the prompt first
            self.skip_prompt = False
            if len(ids) == self.prompt_len:
                return
        self.ids.extend(ids)
        if time.monotonic() - self.last >= self.interval:
            self.flush()

    def text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def flush(self, final: bool = False) -> None:
        text = self.text()
        if not final:
            text = text.rstrip("\ufffd")
        self.last = time.monotonic()
        # Byte-level decoding only ever appends (a held-back character completes later).
        if len(text) > len(self.sent) and text.startswith(self.sent):
            if self.on_text is not None:
                self.on_text(len(self.sent), text[len(self.sent):])
                self.frames += 1
            self.sent = text

    def end(self) -> None:
        self.flush(final=True)


def _int(inputs: dict, name: str, default: int, low: int, high: int) -> int:
    return zoo._int_option(inputs, name, default, low, high)


def _generate(loaded: LoadedHF, inputs: dict, chat: bool, on_text, seed: int | None) -> dict:
    import torch

    prompt = str(inputs.get("prompt", ""))
    if not prompt.strip():
        raise InputError("give a prompt")
    if len(prompt) > MAX_TEXT_CHARS:
        raise InputError(f"the prompt is longer than {MAX_TEXT_CHARS} characters")
    max_new = _int(inputs, "max_new_tokens", 64, 1, MAX_GENERATE)
    temperature = zoo._float_option(inputs, "temperature", 0.8, 0.0, 5.0)
    top_k = _int(inputs, "top_k", 0, 0, 1_000_000)
    top_p = zoo._float_option(inputs, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0.0:
        raise InputError("top_p must be above 0 (1 = every token)")
    tok, model = loaded.processor, loaded.model
    notes = []
    if chat and getattr(tok, "chat_template", None):  # a model fine-tuned on conversations: its template
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                       tokenize=False)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        notes.append("the prompt was sent as a user turn in the model's chat template")
    else:
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    if ids.shape[1] == 0:
        raise InputError("the prompt has no tokens for this tokenizer")
    config = model.config
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if limit and ids.shape[1] + max_new > limit:
        if max_new >= limit:
            raise InputError(f"max_new_tokens must be below the model's context ({limit} tokens)")
        ids = ids[:, -(limit - max_new):]
        notes.append(f"the prompt was cut to its last {limit - max_new} tokens (the model's context is {limit})")
    stream = TokenStream(tok, ids.shape[1], on_text)
    if seed is not None:
        torch.manual_seed(seed)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    sample = temperature > 0
    with torch.no_grad():
        out = model.generate(ids.to(model.device), attention_mask=torch.ones_like(ids).to(model.device),
                             max_new_tokens=max_new, do_sample=sample,
                             temperature=temperature if sample else None, top_k=top_k if sample else None,
                             top_p=top_p if sample else None, pad_token_id=pad, streamer=stream)
    generated = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    return {"type": "text", "prompt": prompt, "generated": generated, "temperature": temperature,
            "top_k": top_k or None, "top_p": top_p, "max_new_tokens": max_new,
            "tokens": int(out.shape[1] - ids.shape[1]), "notes": notes}


def predict(artifacts_dir: str | Path, task: str, inputs: dict, image: bytes | None = None, *,
            base: Callable[[], Path] | None = None, info: dict | None = None, max_length: int = 512,
            chat: bool = False, on_text: Callable[[int, str], None] | None = None, seed: int | None = None) -> dict:
    """One try of a fine-tuned model. `info`: the job's dataset info (classes; the image size and
    channels the images were ingested at); `chat`: the model was fine-tuned on conversations."""
    info = info or {}
    loaded = load(artifacts_dir, task, base, info.get("classes"))
    if task == "causal_lm":
        return _generate(loaded, inputs, chat, on_text, seed)
    if task == "text_classification":
        return _classify_text(loaded, str(inputs.get("text", "")), max_length)
    if task == "image_classification":
        return _classify_image(loaded, image, info)
    raise InputError(f"cannot try models of task {task!r}")


__all__ = ["InputError", "LoadedHF", "TokenStream", "load", "predict"]
