"""Sample datasets for a first look: one small, deterministic dataset of every dataset kind
(models_zoo.kinds.KINDS), generated here — nothing is downloaded — and ingested through the same
path as an upload (services.create_dataset: quota, sniffing, the ingest worker), for the user
who asked. Each has a guided first job (`first_job`): settings sized to finish in well under a
minute on a CPU worker.

The generators use the standard library's seeded `random` (and Pillow for the images), so the
same version always produces the same bytes.
"""

from __future__ import annotations

import io
import json
import math
import random
import zipfile
from dataclasses import dataclass, field

from django.core.files.uploadedfile import TemporaryUploadedFile

from models_zoo import kinds

PREFIX = "trainyard-sample-"  # the generated file names: how a sample dataset is recognised


@dataclass(frozen=True)
class Sample:
    kind: str
    filename: str
    name: str
    description: str
    make: object  # () -> bytes
    content_type: str
    # The guided first job (None: the kind has no architecture that trains offline from scratch).
    architecture: str | None = None
    model_config: dict = field(default_factory=dict)
    train_config: dict = field(default_factory=dict)
    guide: str = ""


# -- generators -----------------------------------------------------------------------------------

def flowers_csv() -> bytes:
    """Three species told apart by four measurements and a colour (iris-like; 600 rows)."""
    rnd = random.Random(1)
    species = {"setosa": (5.0, 3.4, 1.5, 0.25, "white"), "versicolor": (5.9, 2.8, 4.3, 1.3, "violet"),
               "virginica": (6.6, 3.0, 5.6, 2.0, "blue")}
    lines = ["sepal_length,sepal_width,petal_length,petal_width,colour,species"]
    for i in range(600):
        name = list(species)[i % 3]
        sl, sw, pl, pw, colour = species[name]
        if rnd.random() < 0.1:
            colour = rnd.choice(["white", "violet", "blue"])
        lines.append(f"{rnd.gauss(sl, .35):.2f},{rnd.gauss(sw, .3):.2f},{rnd.gauss(pl, .4):.2f},"
                     f"{max(0.05, rnd.gauss(pw, .2)):.2f},{colour},{name}")
    return ("\n".join(lines) + "\n").encode()


def shapes_zip() -> bytes:
    """28×28 grayscale drawings of circles, squares and triangles at random places and sizes, on
    noise: 80 per class, in class folders."""
    from PIL import Image, ImageDraw

    rnd = random.Random(2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for shape in ("circle", "square", "triangle"):
            for i in range(80):
                img = Image.new("L", (28, 28), 0)
                px = img.load()
                for y in range(28):
                    for x in range(28):
                        px[x, y] = rnd.randint(0, 60)
                d = ImageDraw.Draw(img)
                r = rnd.randint(6, 10)
                cx, cy = rnd.randint(r + 1, 27 - r - 1), rnd.randint(r + 1, 27 - r - 1)
                shade = rnd.randint(170, 255)
                if shape == "circle":
                    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=shade)
                elif shape == "square":
                    d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=shade)
                else:
                    d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=shade)
                out = io.BytesIO()
                img.save(out, format="PNG")
                entry = zipfile.ZipInfo(f"shapes/{shape}/{i:03d}.png", date_time=(2024, 1, 1, 0, 0, 0))
                zf.writestr(entry, out.getvalue(), compress_type=zipfile.ZIP_DEFLATED)  # a fixed date: same bytes
    return buf.getvalue()


POSITIVE = ["great", "wonderful", "excellent", "loved", "fantastic", "superb", "delightful", "enjoyed", "charming",
            "brilliant"]
NEGATIVE = ["awful", "terrible", "boring", "hated", "dreadful", "poor", "disappointing", "dull", "clumsy", "tedious"]
FILLER = ["the", "film", "plot", "acting", "was", "really", "quite", "a", "story", "and", "it", "this", "cast",
          "ending", "music", "felt", "honestly", "overall", "so", "very"]


def reviews_csv() -> bytes:
    """Film reviews labelled pos / neg by the words they use (800 rows)."""
    rnd = random.Random(3)
    lines = ["text,label"]
    for i in range(800):
        label = "pos" if i % 2 == 0 else "neg"
        words = rnd.sample(FILLER, 8) + rnd.sample(POSITIVE if label == "pos" else NEGATIVE, 2)
        rnd.shuffle(words)
        lines.append(f'"{" ".join(words).capitalize()}.",{label}')
    return ("\n".join(lines) + "\n").encode()


def rhymes_txt() -> bytes:
    """A corpus of generated rhyming couplets (about 20 KB) for a character-level language model."""
    rnd = random.Random(4)
    subjects = ["the cat", "a fox", "the moon", "my friend", "the wind", "a bird", "the sea", "old tom"]
    verbs = ["sat on", "ran past", "sang to", "looked at", "dreamed of", "jumped over", "walked by"]
    pairs = [("the hill", "still"), ("the mat", "hat"), ("the tree", "free"), ("the light", "night"),
             ("the door", "more"), ("the rain", "again"), ("the sky", "high")]
    lines = []
    while sum(len(line) + 1 for line in lines) < 20_000:
        place, rhyme = rnd.choice(pairs)
        lines.append(f"{rnd.choice(subjects)} {rnd.choice(verbs)} {place},")
        lines.append(f"and everything was {rhyme}.")
    return ("\n".join(lines) + "\n").encode()


def waves_csv() -> bytes:
    """Signals of 32 steps: sine, square or sawtooth, with random phase, amplitude and noise (600 rows)."""
    rnd = random.Random(5)
    n = 32
    lines = [",".join(f"t{i}" for i in range(n)) + ",label"]
    for i in range(600):
        kind = ("sine", "square", "sawtooth")[i % 3]
        amp, phase, period = rnd.uniform(0.5, 2.0), rnd.uniform(0, 1), rnd.uniform(10, 16)
        values = []
        for t in range(n):
            u = (t / period + phase) % 1.0
            v = math.sin(2 * math.pi * u) if kind == "sine" else (1.0 if u < 0.5 else -1.0) if kind == "square" \
                else 2 * u - 1
            values.append(f"{amp * v + rnd.gauss(0, 0.15):.3f}")
        lines.append(",".join(values) + f",{kind}")
    return ("\n".join(lines) + "\n").encode()


def sums_jsonl() -> bytes:
    """Instruction data with a known answer ("add 3 and 4" → "3 + 4 = 7"), 400 conversations."""
    rnd = random.Random(6)
    lines = []
    for i in range(400):
        a, b = rnd.randint(0, 20), rnd.randint(0, 20)
        prompt, answer = f"add {a} and {b}", f"{a} + {b} = {a + b}"
        if i % 2:
            row = {"prompt": prompt, "response": answer}
        else:
            row = {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}
        lines.append(json.dumps(row))
    return ("\n".join(lines) + "\n").encode()


SAMPLES: dict[str, Sample] = {s.kind: s for s in [
    Sample("tabular", PREFIX + "flowers.csv", "Sample: flowers (table)",
           "Three flower species from four measurements and a colour (generated, 600 rows).", flowers_csv, "text/csv",
           "mlp", {"hidden_sizes": [32, 16]}, {"epochs": 10, "batch_size": 32},
           "an MLP, 10 epochs: a few seconds"),
    Sample("image", PREFIX + "shapes.zip", "Sample: shapes (images)",
           "Circles, squares and triangles, 28×28 grayscale on noise (generated, 240 images).", shapes_zip,
           "application/zip", "cnn", {"channels": [16, 32], "hidden_size": 64}, {"epochs": 8, "batch_size": 32},
           "a small CNN, 8 epochs: under half a minute"),
    Sample("text", PREFIX + "reviews.csv", "Sample: film reviews (text)",
           "Short film reviews labelled positive or negative (generated, 800 rows).", reviews_csv, "text/csv",
           "rnn", {"cell": "gru", "embedding_dim": 32, "hidden_size": 32}, {"epochs": 6, "batch_size": 32},
           "a GRU, 6 epochs: about twenty seconds"),
    Sample("corpus", PREFIX + "rhymes.txt", "Sample: rhymes (corpus)",
           "Generated rhyming couplets, about 20 KB of text, for a character-level language model.", rhymes_txt,
           "text/plain", "gpt", {"layers": 2, "heads": 2, "width": 64, "block_size": 64},
           {"epochs": 3, "batch_size": 32}, "a 2-layer GPT, 3 epochs: about half a minute"),
    Sample("sequence", PREFIX + "waves.csv", "Sample: waves (sequences)",
           "Sine, square and sawtooth signals of 32 steps with noise (generated, 600 rows).", waves_csv, "text/csv",
           "cnn1d", {"channels": [16, 32]}, {"epochs": 6, "batch_size": 32}, "a 1-D CNN, 6 epochs: a few seconds"),
    Sample("chat", PREFIX + "sums.jsonl", "Sample: sums (chat)",
           "Instructions with known answers: “add 3 and 4” → “3 + 4 = 7” (generated, 400 conversations).",
           sums_jsonl, "application/json",
           guide="fine-tune a Hugging Face causal LM on it: add a small one under Models first"),
]}
assert set(SAMPLES) == set(kinds.KINDS), "a sample for every dataset kind"


def is_sample(dataset) -> bool:
    return dataset.original_filename.startswith(PREFIX)


def sample_for(dataset) -> Sample | None:
    s = SAMPLES.get(dataset.kind)
    return s if s is not None and dataset.original_filename == s.filename else None


def add_samples(user) -> list:
    """Create the user's sample datasets (each kind once: kinds they already have a sample of
    are skipped; a refused ingest removes its row, so that one can be added again), through
    the upload path. Returns the new datasets.
    Under the user's lock, so two clicks at once add each sample once."""
    from webapp.accounts.storage import user_lock
    from webapp.datasets.models import Dataset
    from webapp.datasets.services import create_dataset

    created = []
    with user_lock(user):
        have = set(Dataset.objects.filter(owner=user, original_filename__startswith=PREFIX)
                   .values_list("original_filename", flat=True))
        for s in SAMPLES.values():
            if s.filename in have:
                continue
            data = s.make()
            upload = TemporaryUploadedFile(s.filename, s.content_type, len(data), None)
            upload.write(data)
            upload.flush()
            try:
                created.append(create_dataset(user, upload, name=s.name, description=s.description, kind=s.kind))
            finally:
                upload.close()
    return created
