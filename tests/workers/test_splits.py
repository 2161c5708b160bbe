"""Train / validation / test splits the user controls, for every kind that has them: a `split`
column (tables, sequences, texts), train/ val/ test/ folders (images), or the seeded split with
an optional test fraction. The split column is never a feature; bad values are refused with
their line and nothing is written. The training loop evaluates the test split once, at the
end, on the final model, apart from validation."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from models_zoo import kinds
from tests import datagen
from workers.datasets import IngestError, ingest
from workers.datasets.common import seeded_split
from workers.datasets.images import ingest_image_zip
from workers.datasets.sequences import ingest_sequences
from workers.datasets.tabular import ingest_csv
from workers.datasets.text import ingest_text


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def expected_sizes(n: int) -> dict:
    codes = [datagen.split_of(i) for i in range(n)]
    return {part: codes.count(part) for part in ("train", "val", "test")}


def refused(call, out: Path, words: list[str]) -> str:
    with pytest.raises(IngestError) as exc:
        call()
    for w in words:
        assert w in str(exc.value), (w, str(exc.value))
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    return str(exc.value)


# -- tables -------------------------------------------------------------------------------------


def test_table_split_column_decides_the_split_and_is_not_a_feature(tmp_path):
    src = datagen.table_csv(tmp_path / "t.csv", n=200, split=True)
    info = ingest_csv(src, tmp_path / "out")
    sizes = expected_sizes(200)
    assert info["split"] == "provided" and info["split_column"] == "split"
    assert (info["num_train"], info["num_val"], info["num_test"]) == (sizes["train"], sizes["val"], sizes["test"])
    assert info["splits"] == {"source": "provided", "column": "split", **sizes}
    assert info["val_fraction"] is None and info["split_seed"] is None
    # never one-hot encoded as features (it used to become split=train, split=val, ...)
    assert not any(name.startswith("split") for name in info["feature_names"])
    assert info["feature_names"] == ["x1", "x2", "colour=blue", "colour=green", "colour=red"]
    # the rows are where the column says, in file order
    X_test = np.load(tmp_path / "out" / "X_test.npy")
    y_test = np.load(tmp_path / "out" / "y_test.npy")
    assert X_test.shape == (sizes["test"], 5) and y_test.shape == (sizes["test"],)
    rows = [line.split(",") for line in src.read_text().splitlines()[1:]]
    test_labels = [r[3] for i, r in enumerate(rows) if datagen.split_of(i) == "test"]
    assert [info["classes"][k] for k in y_test] == test_labels


def test_table_split_values_any_case_and_validation(tmp_path):
    values = ["Train", "TRAIN", "validation", "Val", "valid", "Test", "train", "train"]
    rows = "".join(f"{i},{'ab'[i % 2]},{v}\n" for i, v in enumerate(values * 3))
    info = ingest_csv(write(tmp_path / "t.csv", "x,label,Split\n" + rows), tmp_path / "out")
    assert info["split_column"] == "Split"
    assert (info["num_train"], info["num_val"], info["num_test"]) == (12, 9, 3)


def test_table_split_column_option_names_another_column(tmp_path):
    rows = "".join(f"{i},{'ab'[i % 2]},{datagen.split_of(i)},{i % 3}\n" for i in range(40))
    info = ingest_csv(write(tmp_path / "t.csv", "x,label,fold,split\n" + rows), tmp_path / "out",
                      split_column="fold")
    assert info["split_column"] == "fold" and info["num_test"] == 4
    assert info["feature_names"] == ["x", "split"]  # the other column is an ordinary feature then


def test_table_default_label_skips_the_split_column(tmp_path):
    rows = "".join(f"{i},{'ab'[i % 2]},{datagen.split_of(i)}\n" for i in range(30))
    info = ingest_csv(write(tmp_path / "t.csv", "x,kind,split\n" + rows), tmp_path / "out")
    assert info["label_column"] == "kind" and info["feature_names"] == ["x"]


@pytest.mark.parametrize(("cell", "words"), [
    ("tset", ["line 5", "split 'tset'", "not train, val (validation) or test"]),
    ("", ["line 5", "the split ('split') is empty"]),
])
def test_table_bad_split_value_is_refused_with_its_line(tmp_path, cell, words):
    rows = [f"{i},{'ab'[i % 2]},{datagen.split_of(i)}" for i in range(20)]
    rows[3] = f"3,b,{cell}"
    src = write(tmp_path / "t.csv", "x,label,split\n" + "\n".join(rows) + "\n")
    refused(lambda: ingest_csv(src, tmp_path / "out"), tmp_path / "out", words)


@pytest.mark.parametrize(("splits", "options", "words"), [
    (["train", "test"], {}, ["marks no row as val", "every epoch is evaluated"]),
    (["val", "test"], {}, ["marks no row as train"]),
    (["train", "val"], {"test_fraction": 0.1}, ["test fraction is for the seeded split", "'split'"]),
    (["train", "val"], {"split_column": "fold"}, ["split column 'fold' does not exist"]),
    (["train", "val"], {"label_column": "split"}, ["cannot also be the label column"]),
])
def test_table_split_problems(tmp_path, splits, options, words):
    rows = "".join(f"{i},{'ab'[i % 2]},{splits[i % len(splits)]}\n" for i in range(20))
    src = write(tmp_path / "t.csv", "x,label,split\n" + rows)
    refused(lambda: ingest_csv(src, tmp_path / "out", **options), tmp_path / "out", words)


def test_table_class_without_training_rows_is_refused(tmp_path):
    rows = "".join(f"{i},{'c' if i % 5 == 4 else 'ab'[i % 2]},{'val' if i % 5 == 4 else datagen.split_of(i)}\n"
                   for i in range(40))
    src = write(tmp_path / "t.csv", "x,label,split\n" + rows)
    refused(lambda: ingest_csv(src, tmp_path / "out"), tmp_path / "out", ["class 'c' has no train rows"])


def test_table_seeded_test_fraction(tmp_path):
    src = datagen.table_csv(tmp_path / "t.csv", n=300)
    info = ingest_csv(src, tmp_path / "a", val_fraction=0.2, test_fraction=0.1, seed=4)
    again = ingest_csv(src, tmp_path / "b", val_fraction=0.2, test_fraction=0.1, seed=4)
    assert (info["num_train"], info["num_val"], info["num_test"]) == (210, 60, 30)
    assert info["split"] == "seeded" and info["splits"]["test_fraction"] == 0.1 and info["split_seed"] == 4
    for name in ("X_test", "y_test", "X_val", "X_train"):
        assert np.array_equal(np.load(tmp_path / "a" / f"{name}.npy"), np.load(tmp_path / "b" / f"{name}.npy"))
    # stratified: both classes in each split
    for part in ("train", "val", "test"):
        assert len(np.unique(np.load(tmp_path / "a" / f"y_{part}.npy"))) == 2
    assert again["num_test"] == 30


def test_table_without_a_test_fraction_splits_exactly_as_before(tmp_path):
    src = datagen.table_csv(tmp_path / "t.csv", n=120)
    info = ingest_csv(src, tmp_path / "out", seed=7)
    assert info["num_test"] == 0 and not (tmp_path / "out" / "X_test.npy").exists()
    labels = [line.split(",")[3] for line in src.read_text().splitlines()[1:]]
    y = np.asarray([info["classes"].index(v) for v in labels])
    _train, val = seeded_split(len(y), 0.2, 7, y, exact_total=True)
    assert np.array_equal(np.load(tmp_path / "out" / "y_val.npy"), y[val])


def test_fractions_that_leave_no_training_rows_are_refused():
    with pytest.raises(kinds.OptionsError, match="validation \\+ test below 1"):
        kinds.form_options("tabular", {"val_fraction": "0.5", "test_fraction": "0.5"})
    assert kinds.form_options("tabular", {"test_fraction": "0.1"}) == {"val_fraction": 0.2, "test_fraction": 0.1}


# -- sequences ----------------------------------------------------------------------------------


def test_sequence_split_column_is_not_a_step(tmp_path):
    src = datagen.sequence_csv(tmp_path / "s.csv", n=90, length=12, split=True)
    info = ingest_sequences(src, tmp_path / "out")
    sizes = expected_sizes(90)
    assert info["input_shape"] == [12, 1] and info["split"] == "provided" and info["split_column"] == "split"
    assert (info["num_train"], info["num_val"], info["num_test"]) == (sizes["train"], sizes["val"], sizes["test"])
    assert np.load(tmp_path / "out" / "X_test.npy").shape == (sizes["test"], 12, 1)
    assert info["preview"]["header"][-2:] == ["label", "split"]


def test_sequence_bad_split_value(tmp_path):
    src = write(tmp_path / "s.csv", "t0,t1,label,split\n1,2,a,train\n2,3,b,val\n3,4,a,later\n")
    refused(lambda: ingest_sequences(src, tmp_path / "out"), tmp_path / "out",
            ["line 4", "split 'later'", "not train, val (validation) or test"])


def test_sequence_seeded_test_fraction(tmp_path):
    src = datagen.sequence_csv(tmp_path / "s.csv", n=90, length=8)
    info = ingest("sequence", src, tmp_path / "out", {"val_fraction": 0.2, "test_fraction": 0.2})
    assert info["num_test"] == 18 and info["num_val"] == 18 and info["num_train"] == 54


# -- texts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_split_column_csv_and_jsonl(tmp_path, fmt):
    make = datagen.sentiment_csv if fmt == "csv" else datagen.sentiment_jsonl
    src = make(tmp_path / f"r.{fmt}", n=100, split=True)
    info = ingest_text(src, tmp_path / "out")
    sizes = expected_sizes(100)
    assert info["split"] == "provided" and info["split_column"] == "split"
    assert (info["num_train"], info["num_val"], info["num_test"]) == (sizes["train"], sizes["val"], sizes["test"])
    test_texts = json.loads((tmp_path / "out" / "test_texts.json").read_text())
    rows = datagen.sentiment_rows(100)
    assert test_texts == [t for i, (t, _) in enumerate(rows) if datagen.split_of(i) == "test"]
    assert np.load(tmp_path / "out" / "X_test.npy").shape[0] == sizes["test"]
    assert info["text_column"] == "text" and info["label_column"] == "label"


def test_text_jsonl_record_without_the_split_field(tmp_path):
    lines = [json.dumps({"text": f"nice words {i}", "label": "ab"[i % 2], "split": "train"}) for i in range(6)]
    lines.append(json.dumps({"text": "odd one", "label": "a"}))
    src = write(tmp_path / "r.jsonl", "\n".join(lines) + "\n")
    refused(lambda: ingest_text(src, tmp_path / "out"), tmp_path / "out", ["line 7", "no 'split' field"])


def test_text_seeded_test_fraction(tmp_path):
    src = datagen.sentiment_csv(tmp_path / "r.csv", n=100)
    info = ingest_text(src, tmp_path / "out", test_fraction=0.1)
    assert (info["num_train"], info["num_val"], info["num_test"]) == (70, 20, 10)
    assert len(json.loads((tmp_path / "out" / "test_texts.json").read_text())) == 10


# -- images -------------------------------------------------------------------------------------


def folder_sizes(src: Path) -> dict:
    with zipfile.ZipFile(src) as zf:
        tops = [name.split("/")[1] for name in zf.namelist()]
    return {part: tops.count(part) for part in ("train", "val", "test")}


def test_image_train_val_test_folders(tmp_path):
    src = datagen.digits_png_zip(tmp_path / "d.zip", limit=200, splits=True)
    info = ingest_image_zip(src, tmp_path / "out")
    sizes = folder_sizes(src)
    assert sizes["test"] >= 10
    assert info["split"] == "provided" and info["split_column"] is None
    assert (info["num_train"], info["num_val"], info["num_test"]) == (sizes["train"], sizes["val"], sizes["test"])
    assert np.load(tmp_path / "out" / "X_test.npy").shape == (sizes["test"], 1, 8, 8)
    assert info["classes"] == [str(d) for d in range(10)]


def _zip(path: Path, folders: dict[str, int]) -> Path:
    from PIL import Image

    with zipfile.ZipFile(path, "w") as zf:
        for folder, count in folders.items():
            for i in range(count):
                buf = io.BytesIO()
                Image.new("L", (8, 8), 20 * i).save(buf, "PNG")
                zf.writestr(f"{folder}/{i}.png", buf.getvalue())
    return path


@pytest.mark.parametrize(("folders", "options", "words"), [
    ({"train/a": 3, "train/b": 3, "test/a": 2, "test/b": 2}, {}, ["train/ and test/ folders but no val/"]),
    ({"train/a": 3, "train/b": 3, "val/a": 2, "val/b": 2, "test/c": 2}, {},
     ["class 'c' has images in test/ but none in train/"]),
    ({"train/a": 3, "train/b": 3, "val/a": 2, "val/b": 2}, {"test_fraction": 0.2},
     ["test fraction is for the seeded split"]),
])
def test_image_split_problems(tmp_path, folders, options, words):
    src = _zip(tmp_path / "i.zip", folders)
    refused(lambda: ingest_image_zip(src, tmp_path / "out", **options), tmp_path / "out", words)


def test_image_seeded_test_fraction(tmp_path):
    src = datagen.digits_png_zip(tmp_path / "d.zip", limit=300)
    info = ingest("image", src, tmp_path / "out", {"test_fraction": 0.1})
    assert info["split"] == "seeded" and info["test_fraction"] == 0.1
    assert info["num_train"] + info["num_val"] + info["num_test"] == 300
    assert 25 <= info["num_test"] <= 35 and 55 <= info["num_val"] <= 65
    assert len(np.unique(np.load(tmp_path / "out" / "y_test.npy"))) == 10  # stratified
    # without a test fraction the split is exactly what it always was
    plain = ingest_image_zip(src, tmp_path / "plain")
    assert plain["num_test"] == 0 and not (tmp_path / "plain" / "X_test.npy").exists()


# -- the training loop: the test split once, at the end -----------------------------------------

torch = pytest.importorskip("torch")

from workers.training import Callback, TrainSpec, run  # noqa: E402


class Recorder(Callback):
    def __init__(self):
        self.events: list[tuple] = []

    def on_log(self, state, control, split, values):
        self.events.append(("log", split, state.epoch, dict(values)))

    def on_eval(self, state, control, metrics):
        self.events.append(("eval", state.epoch, metrics))


def spec(ds: Path, out: Path, **train) -> TrainSpec:
    train = {"epochs": 3, "batch_size": 32, "learning_rate": 0.03, **train}
    return TrainSpec("mlp", {"hidden_sizes": [16]}, train, str(ds), str(out), device="cpu", log_interval=1e9)


def flip_test_labels(ds: Path) -> None:
    """Test labels the model cannot get right: if the loop looked at them, it would show."""
    y = np.load(ds / "y_test.npy")
    np.save(ds / "y_test.npy", 1 - y)


def test_training_evaluates_the_test_split_once_at_the_end(tmp_path):
    ds = tmp_path / "ds"
    ingest_csv(datagen.table_csv(tmp_path / "t.csv", n=300, split=True), ds)
    flip_test_labels(ds)
    rec = Recorder()
    result = run(spec(ds, tmp_path / "job", keep="best", early_stopping_patience=1), [rec])
    assert result.status == "succeeded"
    tests = [e for e in rec.events if e[:2] == ("log", "test")]
    assert len(tests) == 1 and rec.events[-1] is tests[0]  # once, after every validation
    values = tests[0][3]
    assert "confusion" not in values and values["accuracy"] < 0.5 < result.metrics["accuracy"]
    assert result.test_metrics["accuracy"] == values["accuracy"]
    # keep-best and early stopping saw validation only
    evals = [e for e in rec.events if e[0] == "eval"]
    assert all(e[2]["accuracy"] > 0.5 for e in evals)
    config = json.loads((tmp_path / "job" / "artifacts" / "config.json").read_text())
    assert config["test_metrics"]["accuracy"] == values["accuracy"]
    assert config["metrics"]["accuracy"] == result.metrics["accuracy"]
    card = (tmp_path / "job" / "artifacts" / "MODEL_CARD.md").read_text()
    assert "- training / validation / test: 210 / 60 / 30 (the file's 'split' column)" in card
    assert "## Test metrics" in card and f"- accuracy: {values['accuracy']:.6g}" in card


def test_the_test_split_is_the_exported_models(tmp_path):
    """keep=best exports the best epoch: the test metrics are that model's, evaluated after it
    was loaded back (the same numbers a fresh evaluation of the exported weights gives)."""
    import models_zoo.loading
    from workers.training.data import load_cache
    from workers.training.loop import evaluate

    ds = tmp_path / "ds"
    ingest_csv(datagen.table_csv(tmp_path / "t.csv", n=300), ds, test_fraction=0.2)
    result = run(spec(ds, tmp_path / "job", keep="best", epochs=4, learning_rate=0.3), [])
    model, _cfg = models_zoo.loading.load_model(tmp_path / "job" / "artifacts")
    again, _ = evaluate(model, load_cache(ds, torch.device("cpu")), 1024, split="test")
    assert again["accuracy"] == pytest.approx(result.test_metrics["accuracy"])
    assert again["loss"] == pytest.approx(result.test_metrics["loss"], rel=1e-5)


def test_no_test_split_no_test_evaluation(tmp_path):
    ds = tmp_path / "ds"
    ingest_csv(datagen.table_csv(tmp_path / "t.csv", n=120), ds)
    rec = Recorder()
    result = run(spec(ds, tmp_path / "job", epochs=1), [rec])
    assert result.test_metrics == {} and not [e for e in rec.events if e[:2] == ("log", "test")]
    assert "## Test metrics" not in (tmp_path / "job" / "artifacts" / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize("kind", ["sequence", "text", "image"])
def test_every_kind_trains_and_tests(tmp_path, kind):
    make = {"sequence": lambda: datagen.sequence_csv(tmp_path / "s.csv", n=90, length=8, split=True),
            "text": lambda: datagen.sentiment_csv(tmp_path / "r.csv", n=100, split=True),
            "image": lambda: datagen.digits_png_zip(tmp_path / "d.zip", limit=120, splits=True)}[kind]
    ds = tmp_path / "ds"
    info = ingest(kind, make(), ds, {})
    arch = {"sequence": "cnn1d", "text": "rnn", "image": "mlp"}[kind]
    model = {"sequence": {}, "text": {"hidden_size": 16, "embedding_dim": 16}, "image": {"hidden_sizes": [16]}}[kind]
    s = TrainSpec(arch, model, {"epochs": 1, "batch_size": 16}, str(ds), str(tmp_path / "job"), device="cpu")
    result = run(s, [])
    assert result.status == "succeeded" and info["num_test"] > 0
    assert set(result.test_metrics) >= {"loss", "accuracy"}
