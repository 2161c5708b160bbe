"""Text-classification ingest (CSV/TSV/JSON Lines) on generated files: the cache it writes, and its
refusals (pure numpy, no Django)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests import datagen
from workers.datasets import ingest
from workers.datasets.common import IngestError
from workers.datasets.text import PAD, UNK, ingest_text

ARRAYS = ("X_train", "X_val", "y_train", "y_val", "len_train", "len_val")


def write(path, content: str | bytes):
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def load(out):
    return {name: np.load(out / f"{name}.npy", allow_pickle=False) for name in ARRAYS}


def assert_nothing_left(tmp_path, keep):
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    assert {p.name for p in tmp_path.iterdir()} == {keep}


def refused(tmp_path, name, content, words, **kw):
    src = write(tmp_path / name, content)
    with pytest.raises(IngestError) as exc:
        ingest_text(src, tmp_path / "out", **kw)
    msg = str(exc.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert_nothing_left(tmp_path, name)
    return msg


# -- good files -----------------------------------------------------------------------------------


def test_sentiment_csv(tmp_path):
    src = datagen.sentiment_csv(tmp_path / "s.csv", n=200)
    info = ingest_text(src, tmp_path / "out", val_fraction=0.25, seed=3)
    out = tmp_path / "out"
    assert info["kind"] == "text" and info["task"] == "classification" and info["format"] == "csv"
    assert info["text_column"] == "text" and info["label_column"] == "label"
    assert info["classes"] == ["neg", "pos"] and info["num_outputs"] == 2
    assert info["class_counts"] == {"neg": 100, "pos": 100}
    assert info["num_train"] == 150 and info["num_val"] == 50
    assert info["max_len"] == 9 and info["input_shape"] == [9]  # 8 words and a full stop
    assert info["split_seed"] == 3 and info["val_fraction"] == 0.25
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab[:2] == [PAD, UNK] and len(vocab) == info["vocab_size"]
    assert "great" in vocab and "." in vocab and len(set(vocab)) == len(vocab)
    a = load(out)
    assert a["X_train"].dtype == np.int32 and a["X_train"].shape == (150, 9)
    assert a["y_train"].dtype == np.int64 and np.bincount(a["y_val"]).tolist() == [25, 25]  # stratified
    assert (a["len_train"] == (a["X_train"] != 0).sum(1)).all() and a["len_train"].min() >= 1
    assert a["X_train"].max() < info["vocab_size"]
    texts = json.loads((out / "val_texts.json").read_text())
    assert len(texts) == 50 and len(json.loads((out / "train_texts.json").read_text())) == 150
    # The validation texts line up with X_val: decoding the ids gives the text's tokens back.
    words = [vocab[i] for i in a["X_val"][0] if i]
    assert " ".join(words).replace(" .", ".") == texts[0].lower()
    assert info["preview"]["texts"][0] == {"text": datagen.sentiment_rows(200)[0][0], "label": "pos"}
    assert {p.name for p in out.iterdir()} == {f"{n}.npy" for n in ARRAYS} | {"vocab.json", "val_texts.json",
                                                                              "train_texts.json", "info.json"}
    assert json.loads((out / "info.json").read_text()) == json.loads(json.dumps(info))


def test_jsonl_and_the_dispatcher(tmp_path):
    src = datagen.sentiment_jsonl(tmp_path / "s.jsonl", n=100)
    info = ingest("text", src, tmp_path / "out", {"seed": 0})
    assert info["format"] == "json" and info["num_rows"] == 100 and info["classes"] == ["neg", "pos"]


def test_a_json_array_and_numeric_labels(tmp_path):
    items = [{"id": i, "body": f"item {'good' if i % 3 else 'bad'} number {i}", "stars": i % 3} for i in range(30)]
    src = write(tmp_path / "d.json", json.dumps(items, indent=1))
    info = ingest_text(src, tmp_path / "out", text_column="body", label_column="stars")
    assert info["classes"] == ["0", "1", "2"] and info["num_rows"] == 30
    assert info["columns"] == ["id", "body", "stars"]


def test_tsv_named_columns_and_a_stored_upload_without_extension(tmp_path):
    rows = "".join(f"{'x' if i % 2 else 'y'}\tsome words here {i}\n" for i in range(20))
    src = write(tmp_path / "d.tsv", "Category\tReview\n" + rows)
    info = ingest_text(src, tmp_path / "out")
    assert info["text_column"] == "Review" and info["label_column"] == "Category"
    # Uploads are stored as <id>.upload: the format and delimiter come from the content.
    src2 = write(tmp_path / "x.upload", src.read_bytes())
    assert ingest_text(src2, tmp_path / "out2")["num_rows"] == 20
    src3 = write(tmp_path / "y.upload", b'{"text": "a b", "label": 1}\n{"text": "c", "label": 2}\n' * 3)
    assert ingest_text(src3, tmp_path / "out3")["format"] == "json"


def test_defaults_are_first_and_last_columns(tmp_path):
    src = write(tmp_path / "d.csv", "words,extra,verdict\n" + "".join(f"w{i} v,{i},{i % 2}\n" for i in range(10)))
    info = ingest_text(src, tmp_path / "out")
    assert info["text_column"] == "words" and info["label_column"] == "verdict"


def test_vocabulary_comes_from_training_rows_and_unknown_words_map_to_unk(tmp_path):
    rows = [("alpha beta", "a"), ("alpha gamma", "a"), ("delta beta", "b"), ("delta gamma", "b")] * 5
    rows += [("zeta only", "a"), ("omega only", "b")]
    src = write(tmp_path / "d.csv", "text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    info = ingest_text(src, tmp_path / "out", val_fraction=0.3, seed=1)
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    texts = json.loads((tmp_path / "out" / "val_texts.json").read_text())
    X_val = np.load(tmp_path / "out" / "X_val.npy")
    for text, ids in zip(texts, X_val):
        for word, i in zip(text.split(), ids):
            assert i == (vocab.index(word) if word in vocab else 1)
    assert 0 <= info["val_unknown_token_fraction"] <= 1


def test_long_texts_are_cut_to_the_95th_percentile(tmp_path):
    rows = [(" ".join(["w"] * 5), i % 2) for i in range(95)] + [(" ".join(["w"] * 400), i % 2) for i in range(5)]
    src = write(tmp_path / "d.csv", "text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    info = ingest_text(src, tmp_path / "out")
    assert info["max_len"] < 400 and info["truncated"] >= 1
    assert np.load(tmp_path / "out" / "X_train.npy").shape[1] == info["max_len"]


def test_the_cache_loads_for_training(tmp_path):
    torch = pytest.importorskip("torch")
    from workers.training.data import load_cache

    info = ingest_text(datagen.sentiment_csv(tmp_path / "s.csv", n=60), tmp_path / "out")
    data = load_cache(tmp_path / "out", torch.device("cpu"))
    assert data.kind == "text" and data.X_train.dtype == torch.long and data.y_train.dtype == torch.long
    assert data.vocab[:2] == [PAD, UNK] and len(data.val_texts) == info["num_val"]


# -- refused files --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "content", "words"), [
    pytest.param("d.csv", b"", ["empty"], id="empty"),
    pytest.param("d.jsonl", b"", ["empty"], id="empty-jsonl"),
    pytest.param("d.jsonl", b"\n\n", ["no records"], id="blank-jsonl"),
    pytest.param("d.csv", b"text,label\n", ["no data rows"], id="header-only"),
    pytest.param("d.csv", b'{"text": "a", "label": "b"}\n', ["first line is JSON", ".jsonl"], id="json-named-csv"),
    pytest.param("d.jsonl", b"text,label\nhello,x\n", ["does not start with '{'", ".csv"], id="csv-named-jsonl"),
    pytest.param("d.csv", b"text,label\nnice,a\ncaf\xe9,b\n", ["line 3", "UTF-8", "0xe9"], id="latin-1"),
    pytest.param("d.jsonl", b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n',
                 ["line 2", "UTF-8", "0xe9", "offset 42"], id="latin-1-jsonl"),
    pytest.param("d.csv", b"text,label\nnice,a\nba\x00d,b\n", ["line 3", "NUL"], id="nul"),
    pytest.param("d.csv", b"text,label\nnice,a\nbad\nok,b\n", ["line 3", "1 fields", "header has 2"], id="ragged"),
    pytest.param("d.csv", b"text,label\nnice,a\nbad,b,c\n", ["line 3", "3 fields"], id="ragged-long"),
    pytest.param("d.csv", b"text,label\nnice,a\nbad,\n", ["line 3", "label", "empty"], id="empty-label"),
    pytest.param("d.csv", b"text,label\nnice,a\n  ,b\nfine,a\n", ["line 3", "text", "empty"], id="empty-text"),
    pytest.param("d.csv", b"text,label\nnice,a\nbad,a\n", ["single class", "'a'"], id="single-class"),
    pytest.param("d.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b" "label": "y"}\n',
                 ["line 2", "not valid JSON"], id="bad-json"),
    pytest.param("d.jsonl", b'{"text": "a", "label": "x"}\n["b", "y"]\n', ["line 2", "JSON object", "list"],
                 id="not-an-object"),
    pytest.param("d.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b"}\n', ["line 2", "'label'"],
                 id="missing-field"),
    pytest.param("d.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b", "label": null}\n',
                 ["line 2", "label", "empty"], id="null-label"),
    pytest.param("d.jsonl", b'{"text": {"a": 1}, "label": "x"}\n', ["line 1", "string or a number"],
                 id="object-text"),
    pytest.param("d.json", b'[{"text": "a", "label": "x"}, ', ["not valid JSON"], id="truncated-array"),
    pytest.param("d.csv", b"text,label\nnice,a\nbad,b\n", ["too few"], id="too-few-rows"),
])
def test_bad_files(tmp_path, name, content, words):
    refused(tmp_path, name, content, words)


def test_columns_that_do_not_exist(tmp_path):
    content = "text,label\n" + "".join(f"w{i},{i % 2}\n" for i in range(10))
    msg = refused(tmp_path, "d.csv", content, ["label column 'stars' does not exist", "text, label"],
                  label_column="stars")
    refused(tmp_path, "d.csv", content, ["text column 'body' does not exist"], text_column="body")
    refused(tmp_path, "d.csv", content, ["same column"], text_column="text", label_column="text")
    assert "columns are" in msg


@pytest.mark.parametrize("fraction", [0.0, 1.0, "x"])
def test_bad_val_fraction(tmp_path, fraction):
    content = "text,label\n" + "".join(f"w{i},{i % 2}\n" for i in range(10))
    refused(tmp_path, "d.csv", content, ["validation fraction"], val_fraction=fraction)


# -- caps (lowered here) -----------------------------------------------------------------------------


@pytest.fixture
def csv_limit_restored():
    import csv

    before = csv.field_size_limit()
    yield
    csv.field_size_limit(before)


def _jsonl(n):
    return "".join(json.dumps({"text": f"words {i}", "label": "ab"[i % 2]}) + "\n" for i in range(n))


@pytest.mark.parametrize(("name", "make", "message"), [
    ("d.jsonl", _jsonl, "line 7: record 7 is past the limit of 6 records"),
    ("d.json", lambda n: json.dumps([{"text": f"w {i}", "label": "ab"[i % 2]} for i in range(n)]),
     "7 records in the array; at most 6 are supported"),
    ("d.csv", lambda n: "text,label\n" + "".join(f"words {i},{'ab'[i % 2]}\n" for i in range(n)),
     "line 8: row 7 is past the limit of 6 rows"),
])
def test_row_cap(tmp_path, monkeypatch, name, make, message):
    from workers.datasets import text

    monkeypatch.setattr(text, "MAX_ROWS", 6)
    assert ingest_text(write(tmp_path / name, make(6)), tmp_path / "ok")["num_rows"] == 6
    shutil.rmtree(tmp_path / "ok")
    assert refused(tmp_path, name, make(7), []) == message


@pytest.mark.parametrize(("name", "content", "message"), [
    ("d.jsonl", '{"text": "short", "label": "a"}\n{"text": "' + "w" * 60 + '", "label": "b"}\n',
     "line 2: longer than 50 bytes, the limit for one record"),
    ("d.csv", "text,label\nshort,a\n" + "w" * 51 + ",b\n",
     "line 3: a field is longer than 50 bytes, the limit for one cell (is a quote left open?)"),
])
def test_field_size_cap(tmp_path, monkeypatch, csv_limit_restored, name, content, message):
    from workers.datasets import tabular

    monkeypatch.setattr(tabular, "MAX_FIELD_BYTES", 50)
    assert refused(tmp_path, name, content, []) == message


def test_json_array_size_cap(tmp_path, monkeypatch):
    from workers.datasets import text

    monkeypatch.setattr(text, "MAX_JSON_ARRAY_BYTES", 2048)
    items = json.dumps([{"text": f"some words {i}", "label": "ab"[i % 2]} for i in range(60)])
    assert len(items) > 2048
    msg = refused(tmp_path, "d.json", items, [])
    assert msg == "a single JSON array may be at most 2 KB; use JSON Lines (one object per line) for larger files"
