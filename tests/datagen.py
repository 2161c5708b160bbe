"""Datasets the tests generate (nothing is downloaded): files in the formats users upload."""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import numpy as np


def digits_png_zip(path: Path, limit: int | None = None) -> Path:
    """scikit-learn's bundled 8×8 digits as a ZIP of class folders of PNGs (1797 images)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, (img, label) in enumerate(zip(digits.images, digits.target)):
            if limit is not None and i >= limit:
                break
            buf = io.BytesIO()
            Image.fromarray((img * 255 / 16).astype(np.uint8), mode="L").save(buf, format="PNG")
            zf.writestr(f"digits/{label}/{i:04d}.png", buf.getvalue())
    return path


POSITIVE = ["great", "wonderful", "excellent", "loved", "fantastic", "superb", "delightful", "enjoyed"]
NEGATIVE = ["awful", "terrible", "boring", "hated", "dreadful", "poor", "disappointing", "worst"]
FILLER = ["the", "movie", "plot", "acting", "was", "really", "quite", "a", "film", "story", "and", "it", "this"]


def sentiment_rows(n: int = 400, seed: int = 0) -> list[tuple[str, str]]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rnd.sample(FILLER, 6) + rnd.sample(POSITIVE if label == "pos" else NEGATIVE, 2)
        rnd.shuffle(words)
        rows.append((" ".join(words).capitalize() + ".", label))
    return rows


def sentiment_csv(path: Path, n: int = 400, seed: int = 0) -> Path:
    with open(path, "w") as f:
        f.write("text,label\n")
        for text, label in sentiment_rows(n, seed):
            f.write(f'"{text}",{label}\n')
    return path


def sentiment_jsonl(path: Path, n: int = 400, seed: int = 0) -> Path:
    with open(path, "w") as f:
        for text, label in sentiment_rows(n, seed):
            f.write(json.dumps({"text": text, "label": label}) + "\n")
    return path


def repetitive_corpus(path: Path, repeats: int = 300) -> Path:
    verse = ("the quick brown fox jumps over the lazy dog. "
             "a stitch in time saves nine. to be or not to be, that is the question.\n")
    path.write_text(verse * repeats)
    return path


def sequence_csv(path: Path, n: int = 600, length: int = 24, seed: int = 0) -> Path:
    """Learnable sequence classes: rising, falling, or a bump in the middle, with noise."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    shapes = {"rise": t, "fall": 1 - t, "bump": np.exp(-((t - 0.5) ** 2) / 0.02)}
    names = list(shapes)
    with open(path, "w") as f:
        f.write(",".join(f"t{i}" for i in range(length)) + ",label\n")
        for i in range(n):
            name = names[i % 3]
            seq = shapes[name] * rng.uniform(0.5, 2.0) + rng.normal(0, 0.15, length) + rng.uniform(-1, 1)
            f.write(",".join(f"{v:.4f}" for v in seq) + f",{name}\n")
    return path
