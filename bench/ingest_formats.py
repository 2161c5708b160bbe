"""Ingest throughput and memory of the text, corpus, sequence and tabular formats on generated files.

    .venv/bin/python bench/ingest_formats.py [--texts 200000] [--corpus-mb 100] [--sequences 50000 --length 128] [--rows 200000]

Each file is built in a temporary directory, then ingested in a fresh Python process (so that
building does not count), which prints the ingest time, rows (or tokens) per second and its peak
RSS (ru_maxrss) next to its RSS just before ingesting (the interpreter plus numpy).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def build_texts(path: Path, n: int) -> None:
    from tests.datagen import sentiment_rows

    with open(path, "w") as f:
        for text, label in sentiment_rows(n):
            f.write(json.dumps({"text": text, "label": label}) + "\n")


def build_corpus(path: Path, mib: int) -> None:
    rng = np.random.default_rng(0)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "café", "naïve", "✓", "data"]
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < mib * 2**20:
            line = " ".join(rng.choice(words, 12)) + ".\n"
            block = line * 2000
            f.write(block)
            written += len(block.encode())


def build_sequences(path: Path, n: int, length: int) -> None:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, length)
    with open(path, "w") as f:
        f.write(",".join(f"t{i}" for i in range(length)) + ",label\n")
        for start in range(0, n, 5000):
            k = min(5000, n - start)
            labels = np.arange(start, start + k) % 3
            X = np.where(labels[:, None] == 0, t, 1 - t) + rng.normal(0, 0.1, (k, length))
            for row, lab in zip(X, labels):
                f.write(",".join(f"{v:.4f}" for v in row) + f",c{lab}\n")


def build_table(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        f.write(",".join(f"f{i}" for i in range(20)) + ",colour,label\n")
        for start in range(0, n, 5000):
            k = min(5000, n - start)
            X = rng.normal(size=(k, 20))
            for row, i in zip(X, range(start, start + k)):
                f.write(",".join(f"{v:.4f}" for v in row) + f",{'rgb'[i % 3]},{i % 2}\n")


def child(kind: str, source: str, out: str) -> None:
    from workers.datasets import ingest

    before = _peak_rss_mib()
    t = time.perf_counter()
    info = ingest(kind, Path(source), Path(out), {})
    seconds = time.perf_counter() - t
    units = info.get("num_tokens", info["num_rows"])
    print(json.dumps({"seconds": seconds, "units": units, "rss_before_mib": before, "peak_rss_mib": _peak_rss_mib()}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=200_000)
    ap.add_argument("--corpus-mb", type=int, default=100)
    ap.add_argument("--sequences", type=int, default=50_000)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--rows", type=int, default=200_000, help="tabular rows (20 numeric + 1 string column)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    cases = [
        ("text", "reviews.jsonl", lambda p: build_texts(p, args.texts), "texts"),
        ("corpus", "corpus.txt", lambda p: build_corpus(p, args.corpus_mb), "tokens"),
        ("sequence", "series.csv", lambda p: build_sequences(p, args.sequences, args.length), "sequences"),
        ("tabular", "table.csv", lambda p: build_table(p, args.rows), "rows"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, name, build, unit in cases:
            source = Path(tmp) / name
            build(source)
            r = subprocess.run([sys.executable, __file__, "--child", kind, str(source), str(Path(tmp) / kind)],
                               capture_output=True, text=True, cwd=ROOT)
            if r.returncode:
                sys.exit(r.stderr)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{kind:9s} {source.stat().st_size / 2**20:7.1f} MiB file: {res['units']} {unit} in "
                  f"{res['seconds']:.2f} s = {res['units'] / res['seconds']:,.0f} {unit}/s; peak RSS "
                  f"{res['peak_rss_mib']:.0f} MiB ({res['rss_before_mib']:.0f} MiB before ingesting)")


if __name__ == "__main__":
    main()
