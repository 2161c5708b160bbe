"""Missing values in tables and sequences: refused by default (the message names the option),
or imputed with missing=impute from the training split only (numeric: median, categorical: most
frequent), with a missing indicator; the statistics are stored with the dataset, and inference
imputes an empty input field exactly as the ingest imputed an empty cell."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models_zoo.contracts import fill_values, raw_columns
from tests import datagen
from workers.datasets import IngestError, ingest
from workers.datasets.sequences import ingest_sequences
from workers.datasets.tabular import ingest_csv


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def refused(call, out: Path, words: list[str]) -> None:
    with pytest.raises(IngestError) as exc:
        call()
    for w in words:
        assert w in str(exc.value), (w, str(exc.value))
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def raw(ds: Path, part: str) -> np.ndarray:
    """The cached features before standardisation."""
    info = json.loads((ds / "info.json").read_text())
    norm = info["normalization"]
    return np.load(ds / f"X_{part}.npy") * np.asarray(norm["std"]) + np.asarray(norm["mean"])


# Training rows decide the statistics; validation rows hold extreme values that would move them.
TABLE = "x,colour,label,split\n" + "".join([
    "1,red,a,train\n", "2,red,b,train\n", "3,blue,a,train\n", ",red,b,train\n", "5,,a,train\n",
    "4,green,b,train\n",
    "1000,blue,a,val\n", "1000,blue,b,val\n", ",blue,a,val\n", "1000,,b,val\n",
])


def test_tables_refuse_empty_cells_by_default_and_say_how_to_impute(tmp_path):
    src = write(tmp_path / "t.csv", TABLE)
    refused(lambda: ingest_csv(src, tmp_path / "out"), tmp_path / "out",
            ["line 5, column 'x': empty value", "missing=impute"])


def test_tables_impute_from_the_training_rows_with_indicators(tmp_path):
    info = ingest_csv(write(tmp_path / "t.csv", TABLE), tmp_path / "out", missing="impute")
    assert info["feature_names"] == ["x", "colour=blue", "colour=green", "colour=red", "x (missing)",
                                     "colour (missing)"]
    missing = info["missing"]
    assert missing["fill"] == {"x": 3.0, "colour": "red"}  # training median of 1,2,3,5,4; most frequent red
    assert missing["columns"]["x"] == {"fill": 3.0, "statistic": "median", "cells": 2, "train_cells": 1,
                                       "indicator": "x (missing)"}
    assert missing["columns"]["colour"]["cells"] == 2 and missing["columns"]["colour"]["statistic"] == "most frequent"
    assert missing["cells"] == 4 and missing["indicators"] == ["x (missing)", "colour (missing)"]
    train, val = raw(tmp_path / "out", "train"), raw(tmp_path / "out", "val")
    np.testing.assert_allclose(train[3], [3, 0, 0, 1, 1, 0], atol=1e-4)  # ",red": x imputed, flagged
    np.testing.assert_allclose(train[4], [5, 0, 0, 1, 0, 1], atol=1e-4)  # "5,,": colour imputed as red
    np.testing.assert_allclose(val[2], [3, 1, 0, 0, 1, 0], atol=1e-4)   # a validation row gets the training fill
    np.testing.assert_allclose(val[3], [1000, 0, 0, 1, 0, 1], atol=1e-4)
    assert raw_columns(info) == ["x", "colour"]  # the try form never asks for an indicator


def test_a_column_with_no_training_value_cannot_be_imputed(tmp_path):
    src = write(tmp_path / "t.csv", "x,y,label,split\n,1,a,train\n,2,b,train\n3,3,a,val\n4,4,b,val\n")
    refused(lambda: ingest_csv(src, tmp_path / "out", missing="impute"), tmp_path / "out",
            ["column 'x' has no value in the training rows"])
    src = write(tmp_path / "e.csv", "x,y,label\n,1,a\n,2,b\n,3,a\n,4,b\n")
    refused(lambda: ingest_csv(src, tmp_path / "out", missing="impute"), tmp_path / "out",
            ["column 'x' is empty in every row"])


def test_labels_and_split_values_are_never_imputed(tmp_path):
    src = write(tmp_path / "t.csv", "x,label\n1,a\n2,\n3,b\n")
    refused(lambda: ingest_csv(src, tmp_path / "out", missing="impute"), tmp_path / "out",
            ["line 3: the label ('label') is empty"])


def test_impute_without_empty_cells_changes_nothing_but_keeps_the_fills(tmp_path):
    src = datagen.table_csv(tmp_path / "t.csv", n=60)
    plain = ingest_csv(src, tmp_path / "a")
    imputed = ingest_csv(src, tmp_path / "b", missing="impute")
    assert imputed["feature_names"] == plain["feature_names"] and imputed["missing"]["cells"] == 0
    assert set(imputed["missing"]["fill"]) == {"x1", "x2", "colour"}
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "X_train.npy"), np.load(tmp_path / "b" / "X_train.npy"))
    assert "missing" not in plain


# -- sequences ----------------------------------------------------------------------------------

SEQ = "t0,t1,t2,label,split\n" + "".join([
    "1,2,3,a,train\n", "3,,5,b,train\n", "5,6,7,a,train\n", ",8,9,b,train\n",
    "100,100,,a,val\n", "100,,100,b,val\n",
])


def test_sequences_refuse_empty_cells_by_default(tmp_path):
    src = write(tmp_path / "s.csv", SEQ)
    refused(lambda: ingest_sequences(src, tmp_path / "out"), tmp_path / "out",
            ["line 3, column 't1': empty value", "missing=impute"])


def test_sequences_impute_each_step_with_its_training_median(tmp_path):
    info = ingest_sequences(write(tmp_path / "s.csv", SEQ), tmp_path / "out", missing="impute")
    assert info["input_shape"] == [3, 2] and info["channel_names"] == ["value", "missing"]
    assert info["missing"]["fill"] == [3.0, 6.0, 6.0]  # medians of 1,3,5 / 2,6,8 / 3,5,7,9
    assert info["missing"]["cells"] == 4 and info["missing"]["steps"] == 3
    assert info["missing"]["columns"]["t1"] == {"fill": 6.0, "statistic": "median", "cells": 2, "train_cells": 1}
    norm = info["normalization"]
    X_val = np.load(tmp_path / "out" / "X_val.npy")
    values = X_val[:, :, 0] * norm["std"][0] + norm["mean"][0]
    np.testing.assert_allclose(values, [[100, 100, 6], [100, 6, 100]], atol=1e-3)
    np.testing.assert_array_equal(X_val[:, :, 1], [[0, 0, 1], [0, 1, 0]])


@pytest.mark.parametrize(("cell", "words"), [("x", ["'x' is not a number"]), ("nan", ["not a finite number"])])
def test_sequences_impute_only_empty_cells(tmp_path, cell, words):
    src = write(tmp_path / "s.csv", f"t0,t1,label\n1,2,a\n3,,b\n{cell},6,a\n7,8,b\n")
    refused(lambda: ingest_sequences(src, tmp_path / "out", missing="impute"), tmp_path / "out", ["line 4", *words])


# -- inference applies the same imputation --------------------------------------------------------

torch = pytest.importorskip("torch")

from workers.serving import predict as inference  # noqa: E402
from workers.serving.predict import InputError  # noqa: E402
from workers.training import TrainSpec, run  # noqa: E402


def trained(tmp: Path, kind: str, source: Path, arch: str, options: dict) -> tuple[Path, Path]:
    ds = tmp / "ds"
    ingest(kind, source, ds, options)
    spec = TrainSpec(arch, {}, {"epochs": 1, "batch_size": 32}, str(ds), str(tmp / "job"), device="cpu")
    assert run(spec).status == "succeeded"
    return ds, tmp / "job" / "artifacts"


def test_tabular_inference_imputes_an_empty_field_like_the_ingest(tmp_path):
    src = datagen.table_csv(tmp_path / "t.csv", n=200, missing=0.1, split=True)
    ds, art = trained(tmp_path, "tabular", src, "mlp", {"missing": "impute"})
    info = json.loads((art / "config.json").read_text())["dataset"]
    assert info["missing"]["strategy"] == "impute" and fill_values(info) == info["missing"]["fill"]
    rows = [line.split(",") for line in src.read_text().splitlines()[1:]]
    val_rows = [r for i, r in enumerate(rows) if datagen.split_of(i) == "val"]
    X_val = np.load(ds / "X_val.npy")
    checked = 0
    for j, (x1, x2, colour, _label, _split) in enumerate(val_rows):
        if "" not in (x1, x2, colour):
            continue
        got = inference.prepare_features({"x1": x1, "x2": x2, "colour": colour}, info)
        np.testing.assert_allclose(got[0].numpy(), X_val[j], rtol=1e-5, atol=1e-5)
        line = inference.prepare_features(f"{x1},{x2},{colour}", info)
        np.testing.assert_allclose(line.numpy(), got.numpy())
        checked += 1
    assert checked >= 3
    result = inference.predict(art, {"features": {"x1": "", "x2": "0.5", "colour": ""}})
    assert result["type"] == "classes"


def test_a_model_of_a_refusing_ingest_still_refuses_empty_fields(tmp_path):
    src = datagen.table_csv(tmp_path / "t.csv", n=80)
    _ds, art = trained(tmp_path, "tabular", src, "mlp", {})
    with pytest.raises(InputError, match="missing value for 'x1'"):
        inference.predict(art, {"features": {"x1": "", "x2": "1", "colour": "red"}})


def test_sequence_inference_imputes_an_empty_value_like_the_ingest(tmp_path):
    src = datagen.sequence_csv(tmp_path / "s.csv", n=90, length=8, missing=0.1, split=True)
    ds, art = trained(tmp_path, "sequence", src, "cnn1d", {"missing": "impute"})
    info = json.loads((art / "config.json").read_text())["dataset"]
    assert info["input_shape"] == [8, 2]
    rows = [line.split(",") for line in src.read_text().splitlines()[1:]]
    val_rows = [r[:8] for i, r in enumerate(rows) if datagen.split_of(i) == "val"]
    X_val = np.load(ds / "X_val.npy")
    checked = 0
    for j, cells in enumerate(val_rows):
        if "" not in cells:
            continue
        got = inference.prepare_sequence(",".join(cells), info)
        np.testing.assert_allclose(got[0].numpy(), X_val[j], rtol=1e-5, atol=1e-5)
        checked += 1
    assert checked >= 3
    assert inference.predict(art, {"sequence": "1,,2,3,,4,5,6"})["type"] == "classes"
    with pytest.raises(InputError, match="expected 8 numbers"):
        inference.predict(art, {"sequence": "1,2,3"})
