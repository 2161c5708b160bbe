"""Quality of the defaults: every dataset kind trained with only dataset and architecture chosen,
next to a classical baseline fitted in the same run on the same split.

    .venv/bin/python bench/quality.py                 # in-process, the full table
    .venv/bin/python bench/quality.py --stack         # through the real stack's API (tests/stack.py)
    .venv/bin/python bench/quality.py --quick         # smaller sets, a few minutes
    .venv/bin/python bench/quality.py --tiny          # seconds: the unit test's mode (cannot rot)
    .venv/bin/python bench/quality.py --only seq10 --arch gru --set epochs=20   # one row, an override

Each dataset is written in the format a user uploads (CSV / ZIP of class folders / .txt) with an
explicit train/val split (a `split` column, or split folders; a corpus's tail), ingested by the
same code the worker runs, and trained either in-process (`workers.training.run`, with the
training settings `submit_job` would store: `models_zoo.defaults.resolve`, explicit values winning)
or, with `--stack`, by POSTing the job to the API of a real stack and reading the stored metrics.
The baseline reads the same rows in the same split: the ingest's own standardised cache for
tables, sequences and images, the raw texts for texts and the train / validation streams for
corpora. Reported: validation accuracy (classification), R² (regression), or cross-entropy in nats
per character (corpus, lower is better).

Datasets (all offline, nothing is downloaded):
* wine, breast_cancer (table classification), diabetes (table regression): scikit-learn's
  bundled copies of the UCI sets, split 80/20 by a seeded stratified shuffle.
* seq10 (sequence): `sequence_benchmark()` below, 10 classes of 40-step signals, 5,000 rows
  split 4,000 / 1,000: the waveforms of the classes differ in shape, frequency and the place of
  a local event, each with random amplitude, phase or position and Gaussian noise.
* sentiment (text): `sentiment_texts()`, sentences from a small grammar where "not" flips the
  polarity of the adjective it precedes, so word order matters.
* grammar (corpus): `grammar_corpus()`, text from a seeded probabilistic grammar (no public-domain
  book is shipped in the installed packages).
* shapes (image): `shape_images()`, 16×16 grey images of 6 shape classes at random position, size
  and contrast, with noise.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from models_zoo import defaults as adaptive  # noqa: E402

# -- generators (published here: the benchmark is what these functions write) ----------------


def sequence_benchmark(n: int = 5000, length: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """10 classes of `length`-step signals, n/10 per class, shuffled. t runs over [0, 1).

    0 sine, 2 cycles      1 sine, 3 cycles       2 square wave, 2 cycles  3 sawtooth, 2 cycles
    4 rising ramp         5 falling ramp         6 step up at a random place
    7 step down at a random place                8 a narrow bump at a random place
    9 a narrow dip at a random place
    Each signal gets a random amplitude in [0.5, 1.5], a random phase (periodic classes) or
    position (steps, bumps: uniform in the middle 80%), a random offset N(0, 0.3²) and noise
    N(0, 0.5²) on every step."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / length
    y = np.repeat(np.arange(10), n // 10)
    rng.shuffle(y)
    X = np.empty((len(y), length), dtype=np.float64)
    for i, c in enumerate(y):
        amp = rng.uniform(0.5, 1.5)
        phase = rng.uniform(0, 2 * np.pi)
        where = rng.uniform(0.1, 0.9)
        if c == 0:
            s = np.sin(2 * np.pi * 2 * t + phase)
        elif c == 1:
            s = np.sin(2 * np.pi * 3 * t + phase)
        elif c == 2:
            s = np.sign(np.sin(2 * np.pi * 2 * t + phase))
        elif c == 3:
            s = 2 * ((2 * t + phase / (2 * np.pi)) % 1.0) - 1
        elif c == 4:
            s = 2 * t - 1
        elif c == 5:
            s = 1 - 2 * t
        elif c == 6:
            s = np.where(t >= where, 1.0, -1.0)
        elif c == 7:
            s = np.where(t >= where, -1.0, 1.0)
        elif c == 8:
            s = 2 * np.exp(-0.5 * ((t - where) / 0.03) ** 2)
        else:
            s = -2 * np.exp(-0.5 * ((t - where) / 0.03) ** 2)
        X[i] = amp * s + rng.normal(0, 0.3) + rng.normal(0, 0.5, size=length)
    return X, y


ADJ = {"pos": ["good", "great", "fine", "lovely", "superb", "pleasant"],
       "neg": ["bad", "awful", "poor", "dull", "dreadful", "weak"]}
SUBJECTS = ["the film", "the plot", "the acting", "the music", "this story", "the ending", "the cast"]
VERBS = ["was", "seemed", "felt", "is", "looked"]
ADVERBS = ["really", "quite", "very", "rather", "truly", ""]


def sentiment_texts(n: int = 3000, seed: int = 0) -> list[tuple[str, str]]:
    """Reviews of one or two clauses "<subject> <verb> [not] <adverb> <adjective>", joined by
    "and" / "but". A clause's polarity is its adjective's, flipped by "not" (placed with
    probability 0.5). The label is the last clause's polarity ("but" and "and" alike): so the
    words alone do not give it, their order does."""
    rnd = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        clauses, pol = [], None
        for _k in range(int(rnd.integers(1, 3))):
            adj_pol = "pos" if rnd.random() < 0.5 else "neg"
            neg = rnd.random() < 0.5
            words = [rnd.choice(SUBJECTS), rnd.choice(VERBS)] + (["not"] if neg else [])
            adv = rnd.choice(ADVERBS)
            words += ([adv] if adv else []) + [rnd.choice(ADJ[adj_pol])]
            clauses.append(" ".join(words))
            pol = ("neg" if adj_pol == "pos" else "pos") if neg else adj_pol
        text = (" " + rnd.choice(["and", "but"]) + " ").join(clauses)
        rows.append((text.capitalize() + ".", pol))
    return rows


NOUNS = ["cat", "dog", "bird", "child", "farmer", "queen", "sailor", "river", "garden", "house", "king", "horse"]
TVERBS = ["sees", "finds", "follows", "likes", "watches", "keeps", "calls", "helps"]
IVERBS = ["sleeps", "runs", "sings", "waits", "laughs", "falls"]
ADJS = ["old", "small", "quiet", "green", "tall", "happy", "dark", "cold"]
PREPS = ["near", "behind", "under", "beside", "with"]


def grammar_corpus(chars: int = 200_000, seed: int = 0) -> str:
    """English-like text from a seeded grammar: S -> NP VP '.', NP -> 'the' [ADJ] N [PREP NP'],
    VP -> IV | TV NP, with an 'and' joining two sentences one time in five; capitalised."""
    rnd = np.random.default_rng(seed)

    def np_(depth: int = 0) -> str:
        words = ["the"] + ([str(rnd.choice(ADJS))] if rnd.random() < 0.4 else []) + [str(rnd.choice(NOUNS))]
        if depth == 0 and rnd.random() < 0.2:
            words += [str(rnd.choice(PREPS)), np_(1)]
        return " ".join(words)

    def sentence() -> str:
        vp = str(rnd.choice(IVERBS)) if rnd.random() < 0.4 else f"{rnd.choice(TVERBS)} {np_()}"
        return f"{np_()} {vp}"

    out, size = [], 0
    while size < chars:
        s = sentence() + (f" and {sentence()}" if rnd.random() < 0.2 else "")
        s = s[0].upper() + s[1:] + ". " + ("\n" if rnd.random() < 0.1 else "")
        out.append(s)
        size += len(s)
    return "".join(out)[:chars]


SHAPES = ["square", "disc", "ring", "cross", "horizontal bar", "vertical bar"]


def shape_images(n: int = 1800, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n grey `size`×`size` images, n/6 of each of SHAPES, centre uniform in the middle half,
    radius 3–5 px, foreground level 0.5–1 on background 0–0.3, noise N(0, 0.15²); uint8."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(SHAPES)), n // len(SHAPES))
    rng.shuffle(y)
    yy, xx = np.mgrid[0:size, 0:size]
    X = np.empty((len(y), size, size), dtype=np.uint8)
    for i, c in enumerate(y):
        cy, cx = rng.uniform(size * 0.25, size * 0.75, size=2)
        r = rng.uniform(3, 5)
        dy, dx = yy - cy, xx - cx
        d = np.sqrt(dy**2 + dx**2)
        mask = [np.maximum(abs(dy), abs(dx)) <= r * 0.8, d <= r, (d <= r) & (d >= r - 1.5),
                ((abs(dy) <= 1) | (abs(dx) <= 1)) & (np.maximum(abs(dy), abs(dx)) <= r),
                (abs(dy) <= 1.2) & (abs(dx) <= r), (abs(dx) <= 1.2) & (abs(dy) <= r)][c]
        bg, fg = rng.uniform(0, 0.3), rng.uniform(0.5, 1.0)
        img = np.where(mask, fg, bg) + rng.normal(0, 0.15, size=(size, size))
        X[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return X, y


# -- writing the uploads --------------------------------------------------------------------


def _split_labels(y: np.ndarray, val_fraction: float, seed: int, stratify: bool) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    _, val = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=y if stratify else None)
    split = np.array(["train"] * len(y), dtype=object)
    split[val] = "val"
    return split


def write_table_csv(path: Path, X: np.ndarray, y: np.ndarray, split: np.ndarray, names: list[str] | None = None,
                    label_fmt=str) -> Path:
    names = names or [f"x{i}" for i in range(X.shape[1])]
    with open(path, "w") as f:
        f.write(",".join([*names, "label", "split"]) + "\n")
        for row, label, s in zip(X, y, split):
            f.write(",".join([*(f"{v:.6g}" for v in row), label_fmt(label), s]) + "\n")
    return path


def write_text_csv(path: Path, rows: list[tuple[str, str]], split: np.ndarray) -> Path:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "split"])
        for (text, label), s in zip(rows, split):
            w.writerow([text, label, s])
    return path


def write_image_zip(path: Path, X: np.ndarray, y: np.ndarray, split: np.ndarray, names: list[str]) -> Path:
    from PIL import Image

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i, (img, label, s) in enumerate(zip(X, y, split)):
            buf = io.BytesIO()
            Image.fromarray(img, mode="L").save(buf, format="PNG")
            zf.writestr(f"shapes/{s}/{names[label].replace(' ', '_')}/{i:05d}.png", buf.getvalue())
    return path


# -- datasets ---------------------------------------------------------------------------------


@dataclass
class Bench:
    name: str
    kind: str
    task: str  # classification | regression | lm
    archs: list[tuple[str, str, dict]]  # (label, architecture, model config)
    published: dict = field(default_factory=dict)  # label -> figure, with its source in SOURCES
    source: str = ""


SOURCES = {
    # The generated sets have no published figures; scikit-learn's sets are small and their
    # figures depend on the split, so none is quoted as comparable.
}


def _sklearn_table(loader: str, scale: float) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    import sklearn.datasets

    d = getattr(sklearn.datasets, loader)()
    names = [n.replace(" ", "_").replace("(", "").replace(")", "") for n in d.feature_names]
    return d.data, d.target, names


def prepare(bench: Bench, tmp: Path, scale: float, seed: int) -> tuple[Path, dict]:
    """Write the dataset's upload file; returns (path, ingest options)."""
    if bench.name in ("wine", "breast_cancer", "diabetes"):
        X, y, names = _sklearn_table(f"load_{bench.name}", scale)
        split = _split_labels(y, 0.2, seed, stratify=bench.task == "classification")
        if bench.task == "classification":
            return write_table_csv(tmp / f"{bench.name}.csv", X, y, split, names, label_fmt=lambda v: f"c{v}"), {}
        return write_table_csv(tmp / f"{bench.name}.csv", X, y, split, names, label_fmt=lambda v: f"{v:.6g}"), \
            {"task": "regression"}
    if bench.name == "seq10":
        n = max(200, int(5000 * scale))
        X, y = sequence_benchmark(n, 40, seed)
        split = np.array(["train"] * len(y), dtype=object)
        split[int(0.8 * len(y)):] = "val"  # rows are shuffled: the last fifth is the validation set
        return write_table_csv(tmp / "seq10.csv", X, y, split, [f"t{i}" for i in range(X.shape[1])],
                               label_fmt=lambda v: f"class{v}"), {}
    if bench.name == "sentiment":
        rows = sentiment_texts(max(200, int(3000 * scale)), seed)
        split = _split_labels(np.array([r[1] for r in rows]), 0.2, seed, stratify=True)
        return write_text_csv(tmp / "sentiment.csv", rows, split), {}
    if bench.name == "grammar":
        path = tmp / "grammar.txt"
        path.write_text(grammar_corpus(max(20_000, int(200_000 * scale)), seed))
        return path, {}
    if bench.name == "shapes":
        X, y = shape_images(max(120, int(1800 * scale)), 16, seed)
        split = _split_labels(y, 0.2, seed, stratify=True)
        return write_image_zip(tmp / "shapes.zip", X, y, split, SHAPES), {}
    raise KeyError(bench.name)


BENCHES = [
    Bench("wine", "tabular", "classification", [("MLP", "mlp", {})]),
    Bench("breast_cancer", "tabular", "classification", [("MLP", "mlp", {})]),
    Bench("diabetes", "tabular", "regression", [("MLP", "mlp", {})]),
    Bench("seq10", "sequence", "classification",
          [("MLP", "mlp", {}), ("1-D CNN", "cnn1d", {}), ("GRU", "rnn", {"cell": "gru"})]),
    Bench("sentiment", "text", "classification", [("LSTM", "rnn", {})]),
    Bench("grammar", "corpus", "lm", [("GPT", "gpt", {})]),
    Bench("shapes", "image", "classification", [("CNN", "cnn", {})]),
]


# -- baselines ------------------------------------------------------------------------------


def _cache(ds_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    load = lambda name: np.load(ds_dir / f"{name}.npy")  # noqa: E731
    Xtr, Xva = load("X_train"), load("X_val")
    return Xtr.reshape(len(Xtr), -1).astype(np.float64), load("y_train"), \
        Xva.reshape(len(Xva), -1).astype(np.float64), load("y_val")


def baselines(bench: Bench, ds_dir: Path, upload: Path, seed: int) -> dict[str, float]:
    """{baseline name: its validation figure} on the ingested split."""
    from sklearn.metrics import accuracy_score, r2_score

    if bench.kind == "corpus":
        return {"char 5-gram (add-k)": ngram_cross_entropy(ds_dir, order=5)}
    if bench.kind == "text":
        return {"TF-IDF (1-2 grams) + logistic": tfidf_logistic(ds_dir, upload)}
    Xtr, ytr, Xva, yva = _cache(ds_dir)
    out = {}
    if bench.task == "regression":
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.linear_model import RidgeCV

        out["ridge"] = r2_score(yva, RidgeCV().fit(Xtr, ytr).predict(Xva))
        out["random forest"] = r2_score(yva, RandomForestRegressor(300, random_state=seed, n_jobs=1)
                                        .fit(Xtr, ytr).predict(Xva))
        return out
    from sklearn.linear_model import LogisticRegression

    if bench.kind == "image":
        from sklearn.svm import SVC

        Xtr, Xva = Xtr / 255.0, Xva / 255.0
        out["RBF SVC"] = accuracy_score(yva, SVC(kernel="rbf", gamma="scale").fit(Xtr, ytr).predict(Xva))
    out["logistic"] = accuracy_score(yva, LogisticRegression(max_iter=3000).fit(Xtr, ytr).predict(Xva))
    if bench.kind != "image":
        from sklearn.ensemble import RandomForestClassifier

        out["random forest"] = accuracy_score(yva, RandomForestClassifier(300, random_state=seed, n_jobs=1)
                                              .fit(Xtr, ytr).predict(Xva))
    return out


def tfidf_logistic(ds_dir: Path, upload: Path) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = {s: json.loads((ds_dir / f"{s}_texts.json").read_text()) for s in ("train", "val")}
    ytr, yva = np.load(ds_dir / "y_train.npy"), np.load(ds_dir / "y_val.npy")
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    clf = LogisticRegression(max_iter=3000, C=10.0).fit(vec.fit_transform(texts["train"]), ytr)
    return float((clf.predict(vec.transform(texts["val"])) == yva).mean())


def ngram_cross_entropy(ds_dir: Path, order: int = 5, k: float = 0.01) -> float:
    """Cross-entropy (nats per token) on the validation stream of an add-k smoothed character
    n-gram model with interpolation-free backoff to nothing: P(c | h) = (n(h,c) + k) / (n(h) + kV)."""
    from collections import Counter

    train, val = np.load(ds_dir / "train.npy").tolist(), np.load(ds_dir / "val.npy").tolist()
    vocab = int(json.loads((ds_dir / "info.json").read_text())["vocab_size"])
    ctx, joint = Counter(), Counter()
    for i in range(order - 1, len(train)):
        h = tuple(train[i - order + 1:i])
        ctx[h] += 1
        joint[h + (train[i],)] += 1
    total = 0.0
    for i in range(order - 1, len(val)):
        h = tuple(val[i - order + 1:i])
        total -= math.log((joint[h + (val[i],)] + k) / (ctx[h] + k * vocab))
    return total / max(1, len(val) - order + 1)


# -- training with defaults ------------------------------------------------------------------


def metric_of(bench: Bench, metrics: dict) -> float:
    return float(metrics["loss"] if bench.task == "lm" else metrics["r2" if bench.task == "regression" else "accuracy"])


def train_in_process(bench: Bench, arch: str, model_config: dict, ds_dir: Path, out: Path,
                     overrides: dict, device: str) -> tuple[float, dict]:
    import models_zoo
    from models_zoo.schema import to_json
    from workers.training import TrainSpec, run

    info = json.loads((ds_dir / "info.json").read_text())
    model_config = to_json(models_zoo.get(arch).validate(model_config))  # as submit_job stores it
    train_config, _ = adaptive.resolve(arch, model_config, info, overrides)
    result = run(TrainSpec(architecture=arch, model_config=model_config, train_config=train_config,
                           dataset_dir=str(ds_dir), output_dir=str(out), device=device))
    return metric_of(bench, result.metrics), train_config


class StackRunner:
    """The real stack (redis-server, Celery worker, uvicorn): uploads through the API, jobs
    submitted with only dataset and architecture (and the overrides), metrics read back."""

    def __init__(self):
        from tests.stack import Stack

        self.stack = Stack(env={k: v for k, v in os.environ.items() if k.startswith("TRAINYARD_")}).start()
        self.api = self.stack.api("alice")

    def upload(self, path: Path, kind: str, options: dict) -> tuple[str, Path]:
        with open(path, "rb") as f:
            r = self.api.post(self.stack.url("/api/datasets/"), files={"file": (path.name, f)},
                              data={"name": path.stem, "kind": kind, **options})
        r.raise_for_status()
        ds = self.stack.wait_dataset(self.api, r.json()["id"], timeout=600)
        assert ds["status"] == "ready", ds
        return ds["id"], self.stack.data_dir / "datasets" / ds["id"]

    def train(self, bench: Bench, dataset: str, arch: str, model_config: dict, overrides: dict) -> tuple[float, dict]:
        r = self.api.post(self.stack.url("/api/jobs/"), json={"dataset": dataset, "architecture": arch,
                                                             "model_config": model_config, "train_config": overrides})
        r.raise_for_status()
        job = self.stack.wait_job(self.api, r.json()["id"], timeout=3600, interval=2.0)
        assert job["status"] == "succeeded", job.get("error")
        return metric_of(bench, job["metrics"]), job["train_config"]

    def close(self):
        self.stack.close()


def _ingest_local(path: Path, kind: str, options: dict, out: Path) -> Path:
    from workers.datasets import ingest

    ingest(kind, path, out, options, processes=1)
    return out


# -- main -----------------------------------------------------------------------------------


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", action="store_true", help="train through the real stack's API")
    ap.add_argument("--quick", action="store_true", help="smaller datasets and a smaller step budget")
    ap.add_argument("--tiny", action="store_true", help="seconds: tiny sets, 1 epoch (a smoke test)")
    ap.add_argument("--only", nargs="*", default=None, help="dataset names")
    ap.add_argument("--arch", nargs="*", default=None, help="row labels or architectures (e.g. gru cnn1d)")
    ap.add_argument("--set", nargs="*", default=[], help="explicit training settings, e.g. epochs=20")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="write the rows here too")
    args = ap.parse_args(argv)
    scale = 0.05 if args.tiny else 0.4 if args.quick else 1.0
    overrides = parse_overrides(args.set)
    if args.tiny:
        overrides.setdefault("epochs", 1)
    elif args.quick:
        # Fewer steps: the budget rule with a fifth of the budget (an explicit epochs wins).
        adaptive.STEP_BUDGET = 1200
    benches = [b for b in BENCHES if args.only is None or b.name in args.only]
    runner = StackRunner() if args.stack else None
    rows: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="quality-") as tmp_:
            tmp = Path(tmp_)
            for bench in benches:
                for seed in range(args.seeds):
                    upload, options = prepare(bench, tmp, scale, seed)
                    if runner is not None:
                        dataset, ds_dir = runner.upload(upload, bench.kind, options)
                    else:
                        ds_dir = _ingest_local(upload, bench.kind, options, tmp / f"{bench.name}-{seed}")
                    base = baselines(bench, ds_dir, upload, seed)
                    for label, arch, mc in bench.archs:
                        if args.arch and not ({label.lower(), arch, mc.get("cell", "")} & set(a.lower() for a in args.arch)):
                            continue
                        started = time.perf_counter()
                        if runner is not None:
                            value, tc = runner.train(bench, dataset, arch, mc, dict(overrides))
                        else:
                            value, tc = train_in_process(bench, arch, mc, ds_dir, tmp / f"job-{bench.name}-{label}-{seed}",
                                                         dict(overrides), args.device)
                        rows.append({"dataset": bench.name, "kind": bench.kind, "task": bench.task, "model": label,
                                     "seed": seed, "defaults": value, "baselines": base,
                                     "published": bench.published.get(label), "seconds": time.perf_counter() - started,
                                     "epochs": tc.get("epochs"), "batch_size": tc.get("batch_size")})
                        print_row(rows[-1], flush=True)
    finally:
        if runner is not None:
            runner.close()
    print()
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


def _better(row: dict) -> bool:
    best = min(row["baselines"].values()) if row["task"] == "lm" else max(row["baselines"].values())
    return row["defaults"] <= best if row["task"] == "lm" else row["defaults"] >= best


def print_row(row: dict, flush: bool = False) -> None:
    print(f"{row['dataset']:14s} {row['model']:8s} seed {row['seed']}: defaults {row['defaults']:.4f} "
          f"({row['epochs']} epochs, batch {row['batch_size']}, {row['seconds']:.0f} s)  baselines "
          + ", ".join(f"{k} {v:.4f}" for k, v in row["baselines"].items()), flush=flush)


def table(rows: list[dict]) -> str:
    """One Markdown table: per dataset and model, the mean over seeds."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["model"]), []).append(r)
    lines = ["| dataset (kind) | metric | model | defaults | epochs | baselines (same split) | published | ≥ baseline |",
             "|---|---|---|---|---|---|---|---|"]
    for (name, model), rs in groups.items():
        r0 = rs[0]
        metric = {"lm": "val nats/char ↓", "regression": "val R²"}.get(r0["task"], "val accuracy")
        mean = float(np.mean([r["defaults"] for r in rs]))
        bases = {k: float(np.mean([r["baselines"][k] for r in rs])) for k in r0["baselines"]}
        ok = _better({**r0, "defaults": mean, "baselines": bases})
        sd = f" ± {np.std([r['defaults'] for r in rs]):.3f}" if len(rs) > 1 else ""
        lines.append(f"| {name} ({r0['kind']}) | {metric} | {model} | {mean:.3f}{sd} | {r0['epochs']} | "
                     + ", ".join(f"{k} {v:.3f}" for k, v in bases.items())
                     + f" | {r0['published'] if r0['published'] is not None else '—'} | {'yes' if ok else '**no**'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
