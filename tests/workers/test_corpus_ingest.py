"""Language-modelling corpus ingest (.txt, char or byte level) on generated files: the token
streams it writes, and its refusals with the place of the fault (pure numpy, no Django)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests import datagen
from workers.datasets import corpus as corpus_mod
from workers.datasets import ingest
from workers.datasets.corpus import ingest_corpus
from workers.datasets.common import IngestError

TEXT = "Het café: naïve façade ✓ — 😀 ok.\nSecond line, with\ttabs.\n" * 10


def write(path, content: str | bytes):
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def stream(out):
    return np.concatenate([np.load(out / "train.npy", allow_pickle=False), np.load(out / "val.npy", allow_pickle=False)])


def assert_nothing_left(tmp_path, keep="c.txt"):
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    assert {p.name for p in tmp_path.iterdir()} == {keep}


def refused(tmp_path, content, words, **kw):
    src = write(tmp_path / "c.txt", content)
    with pytest.raises(IngestError) as exc:
        ingest_corpus(src, tmp_path / "out", **kw)
    msg = str(exc.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert_nothing_left(tmp_path)
    return msg


def test_char_level_round_trip(tmp_path):
    info = ingest_corpus(write(tmp_path / "c.txt", TEXT), tmp_path / "out", level="char", val_fraction=0.1)
    out = tmp_path / "out"
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab == sorted(set(TEXT)) and info["vocab_size"] == len(vocab) == info["num_outputs"]
    assert info["kind"] == "corpus" and info["task"] == "lm" and info["level"] == "char"
    s = stream(out)
    assert s.dtype == np.uint16 and "".join(vocab[i] for i in s) == TEXT
    assert info["num_tokens"] == info["num_chars"] == len(TEXT) == info["num_rows"]
    assert info["num_bytes"] == len(TEXT.encode()) and info["num_lines"] == 20
    assert info["num_val_tokens"] == round(len(TEXT) * 0.1)
    assert info["num_train_tokens"] + info["num_val_tokens"] == len(TEXT)
    # The validation stream is the end of the text.
    val = np.load(out / "val.npy")
    assert "".join(vocab[i] for i in val) == TEXT[-len(val):]
    assert info["preview"]["text"] == TEXT[:2000]
    assert info["token_counts"]["space"] == TEXT.count(" ")
    assert {p.name for p in out.iterdir()} == {"train.npy", "val.npy", "vocab.json", "info.json"}


def test_byte_level_round_trip(tmp_path):
    info = ingest_corpus(write(tmp_path / "c.txt", TEXT), tmp_path / "out", level="byte", val_fraction=0.2)
    s = stream(tmp_path / "out")
    assert s.dtype == np.uint8 and bytes(s.tolist()).decode("utf-8") == TEXT
    assert info["vocab_size"] == 256 and info["num_tokens"] == len(TEXT.encode())
    assert not (tmp_path / "out" / "vocab.json").exists()


def test_bom_and_crlf_are_normalised_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod, "READ_CHUNK", 5)  # cuts multi-byte characters and CR LF pairs
    raw = b"\xef\xbb\xbf" + TEXT.replace("\n", "\r\n").encode("utf-8")
    ingest_corpus(write(tmp_path / "c.txt", raw), tmp_path / "out")
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    assert "".join(vocab[i] for i in stream(tmp_path / "out")) == TEXT
    assert "\r" not in vocab and "\ufeff" not in vocab


def test_repetitive_corpus_through_the_dispatcher_and_load_cache(tmp_path):
    torch = pytest.importorskip("torch")
    from workers.training.data import load_cache

    src = datagen.repetitive_corpus(tmp_path / "c.txt", repeats=20)
    info = ingest("corpus", src, tmp_path / "out", {})
    assert info["val_fraction"] == 0.1
    data = load_cache(tmp_path / "out", torch.device("cpu"))
    assert data.train_stream.dtype == torch.long and data.n_train == info["num_train_tokens"]
    assert data.decode(data.encode("the fox")) == "the fox"
    assert data.decode(data.val_stream[:20]) == src.read_text()[-len(data.val_stream):][:20]


@pytest.mark.parametrize(("content", "words"), [
    pytest.param(b"", ["empty"], id="empty"),
    pytest.param(b" \n\t\n  ", ["no text", "whitespace"], id="whitespace-only"),
    pytest.param(b"hello", ["too short", "5 characters", "at least 100"], id="too-short"),
    pytest.param(b"a" * 150 + b"\nline two caf\xe9 au lait\n", ["not valid UTF-8", "0xe9", "line 2", "column 13",
                                                                "byte offset 163", "Windows-1252"], id="latin-1"),
    pytest.param(b"\xff\xfeh\x00i\x00" * 60, ["UTF-16 (little-endian)", "not UTF-8"], id="utf-16-bom"),
    pytest.param(b"abc\n" * 40 + b"de\x00f", ["line 41", "byte offset 162", "NUL", "binary"], id="nul"),
    pytest.param(b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 2, ["NUL"], id="zip-named-txt"),
    pytest.param("ok " * 50 + "\udcff", ["UTF-8"], id="lone-surrogate"),
])
def test_bad_files(tmp_path, content, words):
    if isinstance(content, str):
        content = content.encode("utf-8", errors="surrogateescape")
    refused(tmp_path, content, words)


def test_the_fault_is_found_past_the_first_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod, "READ_CHUNK", 64)
    content = ("x" * 99 + "\n") * 30 + "ab\x96c"
    msg = refused(tmp_path, content.encode("latin-1"), ["line 31", "column 3", "byte offset 3002", "0x96"])
    assert msg.startswith("not valid UTF-8")


@pytest.mark.parametrize(("kw", "words"), [
    ({"level": "word"}, ["level", "'word'"]),
    ({"val_fraction": 0.0}, ["validation fraction"]),
    ({"val_fraction": 1.5}, ["validation fraction"]),
])
def test_bad_options(tmp_path, kw, words):
    refused(tmp_path, TEXT, words, **kw)
