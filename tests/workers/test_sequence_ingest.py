"""Numeric-sequence ingest (CSV rows of numbers + a label) on generated files: the cache it writes,
and its refusals (pure numpy, no Django)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests import datagen
from workers.datasets import ingest
from workers.datasets.sequences import ingest_sequences
from workers.datasets.common import IngestError

ARRAYS = ("X_train", "X_val", "y_train", "y_val")


def write(path, content: str | bytes):
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def load(out):
    return {name: np.load(out / f"{name}.npy", allow_pickle=False) for name in ARRAYS}


def assert_nothing_left(tmp_path, keep="s.csv"):
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    assert {p.name for p in tmp_path.iterdir()} == {keep}


def refused(tmp_path, content, words, **kw):
    src = write(tmp_path / "s.csv", content)
    with pytest.raises(IngestError) as exc:
        ingest_sequences(src, tmp_path / "out", **kw)
    msg = str(exc.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert_nothing_left(tmp_path)
    return msg


def test_generated_sequences(tmp_path):
    src = datagen.sequence_csv(tmp_path / "s.csv", n=90, length=16)
    info = ingest_sequences(src, tmp_path / "out", val_fraction=0.2, seed=0)
    assert info["kind"] == "sequence" and info["task"] == "classification"
    assert info["input_shape"] == [16, 1] and info["seq_len"] == 16 and info["label_column"] == "label"
    assert info["classes"] == ["bump", "fall", "rise"] and info["class_counts"] == {"bump": 30, "fall": 30, "rise": 30}
    assert info["num_train"] == 72 and info["num_val"] == 18 and info["header_row"] is True
    a = load(tmp_path / "out")
    assert a["X_train"].dtype == np.float32 and a["X_train"].shape == (72, 16, 1)
    assert np.bincount(a["y_val"]).tolist() == [6, 6, 6]
    # Standardised with the stored statistics (one mean/std over every training value).
    raw = np.loadtxt(src, delimiter=",", skiprows=1, usecols=range(16))
    mean, std = info["normalization"]["mean"][0], info["normalization"]["std"][0]
    X = np.concatenate([a["X_train"], a["X_val"]])[:, :, 0]
    back = X.astype(np.float64) * std + mean
    assert all(np.abs(back - r).max(axis=1).min() < 1e-4 for r in raw)  # every row is there
    assert abs(a["X_train"].mean()) < 1e-5 and abs(a["X_train"].std() - 1) < 1e-4
    p = info["preview"]
    assert p["header"][-1] == "label" and len(p["rows"]) == 10 and p["rows"][0][-1] == "rise"
    assert len(p["series"]) == 9 and len(p["series"][0]["values"]) == 16
    assert json.loads((tmp_path / "out" / "info.json").read_text()) == json.loads(json.dumps(info))


def test_headerless_label_first_regression_and_the_dispatcher(tmp_path):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(40, 12))
    target = rows.sum(1) + 0.5
    text = "".join(f"{t:.5f}," + ",".join(f"{v:.5f}" for v in r) + "\n" for t, r in zip(target, rows))
    src = write(tmp_path / "s.csv", text)
    info = ingest("sequence", src, tmp_path / "out", {"label_column": "col1"})
    assert info["header_row"] is False and info["task"] == "regression" and info["num_rows"] == 40
    assert info["input_shape"] == [12, 1] and info["num_outputs"] == 1
    tn = info["target_normalization"]
    a = load(tmp_path / "out")
    assert a["y_train"].dtype == np.float32
    assert tn["mean"] == pytest.approx(float(a["y_train"].mean()), rel=1e-5)


def test_task_override_and_a_sniffed_delimiter(tmp_path):
    text = "a;b;c;y\n" + "".join(f"{i};{i + 1};{i + 2};{i % 3}\n" for i in range(30))
    src = write(tmp_path / "s.upload", text)  # stored uploads have no telling extension
    assert ingest_sequences(src, tmp_path / "out")["task"] == "classification"
    info = ingest_sequences(src, tmp_path / "out2", task="regression")
    assert info["task"] == "regression" and info["input_shape"] == [3, 1]


def test_the_cache_loads_for_training(tmp_path):
    torch = pytest.importorskip("torch")
    from workers.training.data import load_cache

    ingest_sequences(datagen.sequence_csv(tmp_path / "s.csv", n=30, length=8), tmp_path / "out")
    data = load_cache(tmp_path / "out", torch.device("cpu"))
    assert data.kind == "sequence" and tuple(data.X_train.shape[1:]) == (8, 1)
    assert data.X_train.dtype == torch.float32 and data.y_train.dtype == torch.long


H = b"t0,t1,t2,label\n"
GOOD = b"1,2,3,a\n3,2,1,b\n1,2,3,a\n3,2,1,b\n"


@pytest.mark.parametrize(("content", "words"), [
    pytest.param(b"", ["empty"], id="empty"),
    pytest.param(H, ["no data rows"], id="header-only"),
    pytest.param(H + GOOD + b"1,2,a\n", ["line 6", "3 fields", "header has 4"], id="ragged-short"),
    pytest.param(H + GOOD + b"1,2,3,4,a\n", ["line 6", "5 fields"], id="ragged-long"),
    pytest.param(H + GOOD + b"1,x,3,a\n", ["line 6", "column 't1'", "'x' is not a number"], id="not-a-number"),
    pytest.param(H + GOOD + b"1,,3,a\n", ["line 6", "column 't1'", "empty value"], id="empty-cell"),
    pytest.param(H + GOOD + b"1,nan,3,a\n", ["line 6", "'nan'", "finite"], id="nan"),
    pytest.param(H + GOOD + b"1,2,inf,a\n", ["line 6", "'inf'", "finite"], id="inf"),
    pytest.param(H + GOOD + b"1,2,3,\n", ["line 6", "label", "empty"], id="missing-label"),
    pytest.param(H + b"1,2,3,a\n3,2,1,a\n", ["single class", "'a'"], id="single-class"),
    pytest.param(H + GOOD + b"1,2,\xb53,a\n", ["line 6", "UTF-8", "0xb5"], id="latin-1"),
    pytest.param(H + GOOD + b"1,2,\x003,a\n", ["line 6", "NUL"], id="nul"),
    pytest.param(b"PK\x03\x04\x14\x00" + bytes(range(1, 200)), ["line 1", "binary"], id="zip-named-csv"),
    pytest.param(H + b"1,2,3,a\n3,2,1,b\n", ["too few"], id="too-few-rows"),
])
def test_bad_files(tmp_path, content, words):
    refused(tmp_path, content, words)


def test_a_label_column_that_does_not_exist(tmp_path):
    refused(tmp_path, H + GOOD, ["label column 'target' does not exist", "t0, t1, t2, label"], label_column="target")


def test_regression_with_text_labels(tmp_path):
    refused(tmp_path, H + GOOD, ["line 2", "'a' is not a number", "regression"], task="regression")


@pytest.mark.parametrize(("kw", "words"), [
    ({"task": "clustering"}, ["unknown task"]),
    ({"val_fraction": 0}, ["validation fraction"]),
])
def test_bad_options(tmp_path, kw, words):
    refused(tmp_path, H + GOOD * 3, words, **kw)


def test_step_cap(tmp_path, tmp_path_factory, monkeypatch):
    from workers.datasets import sequences

    monkeypatch.setattr(sequences, "MAX_STEPS", 8)
    other = tmp_path_factory.mktemp("gen")
    ok = datagen.sequence_csv(other / "ok.csv", n=30, length=8)
    assert ingest_sequences(ok, other / "out")["seq_len"] == 8  # at the cap: fine
    too_long = datagen.sequence_csv(other / "long.csv", n=30, length=9).read_text()
    msg = refused(tmp_path, too_long, [])
    assert msg == "9 steps in a row (plus the label column); sequences may have at most 8 steps"
