"""bench/quality.py cannot rot: its tiny mode (every dataset kind, a twentieth of the rows, one
epoch) runs here end to end — write the upload, ingest, train with the resolved defaults, fit
the baselines on the same split, print the table — and its generators are checked for what
their docstrings publish."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import quality  # noqa: E402


def test_the_tiny_run_trains_every_kind_next_to_its_baselines(tmp_path):
    out = tmp_path / "rows.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "quality.py"), "--tiny", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert {row["kind"] for row in rows} == {"tabular", "sequence", "text", "corpus", "image"}
    assert {row["task"] for row in rows} == {"classification", "regression", "lm"}
    assert {(row["dataset"], row["model"]) for row in rows} >= {("seq10", "MLP"), ("seq10", "1-D CNN"), ("seq10", "GRU")}
    for row in rows:
        assert np.isfinite(row["defaults"]) and row["baselines"] and row["epochs"] == 1
        assert all(np.isfinite(v) for v in row["baselines"].values())
    assert "| dataset (kind) |" in r.stdout and "≥ baseline" in r.stdout


def test_the_generators_make_what_they_publish():
    X, y = quality.sequence_benchmark(500, 40, seed=1)
    assert X.shape == (500, 40) and np.bincount(y).tolist() == [50] * 10
    again, _ = quality.sequence_benchmark(500, 40, seed=1)
    assert np.array_equal(X, again)
    texts = quality.sentiment_texts(200, seed=0)
    for text, label in texts:
        last = text.rstrip(".").lower().split(" but ")[-1].split(" and ")[-1].split()
        polarity = "pos" if last[-1] in quality.ADJ["pos"] else "neg"
        assert label == (("neg" if polarity == "pos" else "pos") if "not" in last else polarity), text
    corpus = quality.grammar_corpus(5000, seed=0)
    assert len(corpus) == 5000 and corpus.startswith("The ")
    images, labels = quality.shape_images(60, 16, seed=0)
    assert images.shape == (60, 16, 16) and images.dtype == np.uint8 and set(labels) == set(range(6))
