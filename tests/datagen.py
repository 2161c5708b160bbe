"""Datasets the tests generate (nothing is downloaded): files in the formats users upload."""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import numpy as np

# Row i's split when a generator is asked for a split column / split folders: 7 in 10 train,
# 2 validation, 1 test (the words are the ones users write; the ingest accepts any case).
SPLIT_CYCLE = ("train",) * 7 + ("val", "val", "test")


def split_of(i: int, names: tuple[str, str, str] = ("train", "val", "test")) -> str:
    return names[("train", "val", "test").index(SPLIT_CYCLE[i % len(SPLIT_CYCLE)])]


def digits_png_zip(path: Path, limit: int | None = None, splits: bool = False) -> Path:
    """scikit-learn's bundled 8×8 digits as a ZIP of class folders of PNGs (1797 images); with
    `splits`, the class folders sit in train/, val/ and test/ (the k-th image of each class goes
    to split_of(k), so every class is in every split)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    seen: dict[int, int] = {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, (img, label) in enumerate(zip(digits.images, digits.target)):
            if limit is not None and i >= limit:
                break
            buf = io.BytesIO()
            Image.fromarray((img * 255 / 16).astype(np.uint8), mode="L").save(buf, format="PNG")
            k = seen[label] = seen.get(label, -1) + 1
            folder = f"digits/{split_of(k)}" if splits else "digits"
            zf.writestr(f"{folder}/{label}/{i:04d}.png", buf.getvalue())
    return path


def table_csv(path: Path, n: int = 300, seed: int = 0, split: bool = False, missing: float = 0.0) -> Path:
    """A learnable table: numeric x1, x2, a categorical colour, and a label that depends on all
    three. `split`: a `split` column (split_of); `missing`: that share of the feature cells left
    empty (never the label's or the split's)."""
    rng = np.random.default_rng(seed)
    colours = ["red", "green", "blue"]
    with open(path, "w") as f:
        f.write("x1,x2,colour,label" + (",split" if split else "") + "\n")
        for i in range(n):
            x1, x2 = rng.normal(size=2)
            colour = colours[i % 3]
            label = "hi" if x1 + x2 + (0.8 if colour == "red" else 0.0) > 0.4 else "lo"
            cells = [f"{x1:.4f}", f"{x2:.4f}", colour]
            cells = ["" if rng.random() < missing else c for c in cells]
            f.write(",".join([*cells, label] + ([split_of(i)] if split else [])) + "\n")
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


def sentiment_csv(path: Path, n: int = 400, seed: int = 0, split: bool = False) -> Path:
    with open(path, "w") as f:
        f.write("text,label" + (",split" if split else "") + "\n")
        for i, (text, label) in enumerate(sentiment_rows(n, seed)):
            f.write(f'"{text}",{label}' + (f",{split_of(i)}" if split else "") + "\n")
    return path


def sentiment_jsonl(path: Path, n: int = 400, seed: int = 0, split: bool = False) -> Path:
    with open(path, "w") as f:
        for i, (text, label) in enumerate(sentiment_rows(n, seed)):
            f.write(json.dumps({"text": text, "label": label, **({"split": split_of(i)} if split else {})}) + "\n")
    return path


def repetitive_corpus(path: Path, repeats: int = 300) -> Path:
    verse = ("the quick brown fox jumps over the lazy dog. "
             "a stitch in time saves nine. to be or not to be, that is the question.\n")
    path.write_text(verse * repeats)
    return path


def sequence_csv(path: Path, n: int = 600, length: int = 24, seed: int = 0, split: bool = False,
                 missing: float = 0.0) -> Path:
    """Learnable sequence classes: rising, falling, or a bump in the middle, with noise. `split`:
    a `split` column (split_of); `missing`: that share of the steps left empty."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    shapes = {"rise": t, "fall": 1 - t, "bump": np.exp(-((t - 0.5) ** 2) / 0.02)}
    names = list(shapes)
    with open(path, "w") as f:
        f.write(",".join(f"t{i}" for i in range(length)) + ",label" + (",split" if split else "") + "\n")
        for i in range(n):
            name = names[i % 3]
            seq = shapes[name] * rng.uniform(0.5, 2.0) + rng.normal(0, 0.15, length) + rng.uniform(-1, 1)
            cells = ["" if missing and rng.random() < missing else f"{v:.4f}" for v in seq]
            f.write(",".join(cells) + f",{name}" + (f",{split_of(i)}" if split else "") + "\n")
    return path


def shifted_glyphs_zip(path: Path, train_per_class: int = 24, val_per_class: int = 40, size: int = 16,
                       val_shift: int = 3, seed: int = 0) -> Path:
    """Where augmentation is known to help: four 6×6 grayscale glyphs on noise, centred in the
    training images and shifted by up to ±`val_shift` px in the validation images (train/ and
    val/ folders). A model that only saw centred glyphs must learn translation invariance from
    random crops to classify the shifted ones."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    glyphs = [np.zeros((6, 6)) for _ in range(4)]
    glyphs[0][:, 2:4] = 1  # vertical bar
    glyphs[1][2:4, :] = 1  # horizontal bar
    glyphs[2][np.arange(6), np.arange(6)] = 1  # diagonal
    glyphs[3][[0, 0, 5, 5, 0, 5], [0, 5, 0, 5, 2, 3]] = 1  # corners
    with zipfile.ZipFile(path, "w") as zf:
        for split, per_class, shift in (("train", train_per_class, 0), ("val", val_per_class, val_shift)):
            for label, glyph in enumerate(glyphs):
                for i in range(per_class):
                    img = rng.normal(40, 20, (size, size))
                    dy, dx = (rng.integers(-shift, shift + 1, size=2) if shift else (0, 0))
                    top, left = (size - 6) // 2 + dy, (size - 6) // 2 + dx
                    img[top:top + 6, left:left + 6] += glyph * 170
                    buf = io.BytesIO()
                    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L").save(buf, "PNG")
                    zf.writestr(f"{split}/glyph{label}/{i:03d}.png", buf.getvalue())
    return path


def chat_jsonl(path: Path, n: int = 40, seed: int = 0) -> Path:
    """Instruction data with a known answer: "add A and B" → "A + B = C"; every third line in the
    prompt/response form, the others as messages (some with a system message)."""
    rnd = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            a, b = rnd.randint(0, 9), rnd.randint(0, 9)
            prompt, answer = f"add {a} and {b}", f"{a} + {b} = {a + b}"
            if i % 3 == 0:
                row = {"prompt": prompt, "response": answer}
            else:
                row = {"messages": ([{"role": "system", "content": "You do sums."}] if i % 3 == 1 else [])
                       + [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}
            f.write(json.dumps(row) + "\n")
    return path
