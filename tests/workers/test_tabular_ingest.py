"""CSV/TSV ingest on generated files: the cache it writes, and its errors (pure numpy, no Django)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from workers.datasets.common import IngestError
from workers.datasets.tabular import ingest_csv, read_table

ARRAYS = ("X_train", "X_val", "y_train", "y_val")


def write(path, content: str | bytes):
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def load(out):
    """The cache arrays, loaded the way the trainer does (no pickles allowed)."""
    return {name: np.load(out / f"{name}.npy", allow_pickle=False) for name in ARRAYS}


def assert_nothing_left(tmp_path, out_name="out"):
    assert not (tmp_path / out_name).exists()
    assert not (tmp_path / f"{out_name}.partial").exists()
    leftovers = {p.name for p in tmp_path.iterdir()} - {"d.csv", "d.tsv"}
    assert leftovers == set(), leftovers


def separable_rows(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2)) * [1.0, 10.0] + [5.0, -3.0]
    return X


# -- good files -----------------------------------------------------------------------------


def test_classification_with_string_labels(tmp_path):
    X = separable_rows(50)
    labels = ["spam" if i % 5 == 0 else "ham" for i in range(50)]
    text = "f1,f2,kind\n" + "".join(f"{a:.4f},{b:.4f},{lab}\n" for (a, b), lab in zip(X, labels))
    info = ingest_csv(write(tmp_path / "d.csv", text), tmp_path / "out")

    assert info["kind"] == "tabular"
    assert info["task"] == "classification"
    assert info["label_column"] == "kind"
    assert info["columns"] == ["f1", "f2", "kind"]
    assert info["num_rows"] == 50 and info["num_columns"] == 3
    assert info["classes"] == ["ham", "spam"]
    assert info["num_classes"] == 2 and info["num_outputs"] == 2
    assert info["class_counts"] == {"ham": 40, "spam": 10}
    assert info["num_val"] == 10 and info["num_train"] == 40
    assert info["feature_names"] == ["f1", "f2"] and info["input_shape"] == [2]
    assert info["categorical"] == {}

    arrays = load(tmp_path / "out")
    assert arrays["X_train"].dtype == np.float32 and arrays["X_train"].shape == (40, 2)
    assert arrays["X_val"].shape == (10, 2)
    assert arrays["y_train"].dtype == np.int64 and arrays["y_val"].dtype == np.int64
    assert sorted(np.concatenate([arrays["y_train"], arrays["y_val"]]).tolist()) == [0] * 40 + [1] * 10
    # Standardised with training statistics.
    assert np.allclose(arrays["X_train"].mean(0), 0, atol=1e-5)
    assert np.allclose(arrays["X_train"].std(0), 1, atol=1e-4)
    # The stored normalisation reproduces the raw values.
    norm = info["normalization"]
    raw = np.concatenate([arrays["X_train"], arrays["X_val"]]) * norm["std"] + norm["mean"]
    assert np.allclose(np.sort(raw[:, 0]), np.sort(X[:, 0]), atol=1e-3)
    # info.json is what was returned, and nothing else is left in the output dir.
    assert json.loads((tmp_path / "out" / "info.json").read_text()) == json.loads(json.dumps(info))
    assert {p.name for p in (tmp_path / "out").iterdir()} == {f"{a}.npy" for a in ARRAYS} | {"info.json"}
    assert not (tmp_path / "out.partial").exists()


def test_integer_labels_are_classes(tmp_path):
    text = "x,y\n" + "".join(f"{i * 0.5},{[3, -1, 10][i % 3]}\n" for i in range(30))
    info = ingest_csv(write(tmp_path / "d.csv", text), tmp_path / "out")
    assert info["task"] == "classification"
    assert info["classes"] == ["-1", "3", "10"]  # numeric order, not string order
    assert info["class_counts"] == {"-1": 10, "3": 10, "10": 10}
    arrays = load(tmp_path / "out")
    assert set(np.concatenate([arrays["y_train"], arrays["y_val"]]).tolist()) == {0, 1, 2}


def test_float_labels_are_regression(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2))
    y = 3 * X[:, 0] - 2 * X[:, 1] + 0.5
    text = "a,b,target\n" + "".join(f"{a:.5f},{b:.5f},{t:.5f}\n" for (a, b), t in zip(X, y))
    info = ingest_csv(write(tmp_path / "d.csv", text), tmp_path / "out")
    assert info["task"] == "regression"
    assert info["num_outputs"] == 1
    assert "classes" not in info and "num_classes" not in info
    arrays = load(tmp_path / "out")
    assert arrays["y_train"].dtype == np.float32
    tn = info["target_normalization"]
    assert tn["mean"] == pytest.approx(float(arrays["y_train"].mean()), abs=1e-5)
    assert tn["std"] == pytest.approx(float(arrays["y_train"].std()), rel=1e-4)
    assert np.allclose(np.sort(np.concatenate([arrays["y_train"], arrays["y_val"]])), np.sort(y), atol=1e-4)


def test_task_can_be_forced(tmp_path):
    text = "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20))
    info = ingest_csv(write(tmp_path / "d.csv", text), tmp_path / "out", task="regression")
    assert info["task"] == "regression"


def test_tsv(tmp_path):
    text = "x1\tx2\tlabel\n" + "".join(f"{i}\t{i % 4}\t{'a' if i % 2 else 'b'}\n" for i in range(20))
    info = ingest_csv(write(tmp_path / "d.tsv", text), tmp_path / "out")
    assert info["columns"] == ["x1", "x2", "label"]
    assert info["feature_names"] == ["x1", "x2"]
    assert info["classes"] == ["a", "b"]
    assert load(tmp_path / "out")["X_train"].shape == (16, 2)


def test_one_hot_of_a_string_feature(tmp_path):
    colours = ["red", "green", "blue"]
    text = "size,colour,label\n" + "".join(f"{i},{colours[i % 3]},{i % 2}\n" for i in range(30))
    info = ingest_csv(write(tmp_path / "d.csv", text), tmp_path / "out")
    assert info["categorical"] == {"colour": ["blue", "green", "red"]}
    assert info["feature_names"] == ["size", "colour=blue", "colour=green", "colour=red"]
    assert info["input_shape"] == [4]
    arrays = load(tmp_path / "out")
    X = np.concatenate([arrays["X_train"], arrays["X_val"]])
    norm = info["normalization"]
    onehot = X[:, 1:] * norm["std"][1:] + norm["mean"][1:]
    assert np.allclose(onehot.sum(1), 1, atol=1e-5)  # exactly one hot per row
    assert set(np.round(onehot, 4).ravel().tolist()) == {0.0, 1.0}
    assert np.allclose(arrays["X_train"].mean(0), 0, atol=1e-5)


def test_label_column_option(tmp_path):
    text = "label,x,y\n" + "".join(f"{'up' if i % 2 else 'down'},{i},{i * 0.1:.2f}\n" for i in range(20))
    info = ingest_csv(write(tmp_path / "d.csv", text), tmp_path / "out", label_column="label")
    assert info["label_column"] == "label"
    assert info["feature_names"] == ["x", "y"]
    assert info["classes"] == ["down", "up"]


def test_byte_order_mark_is_ignored(tmp_path):
    text = "\ufeffx,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20))
    info = ingest_csv(write(tmp_path / "d.csv", text), tmp_path / "out")
    assert info["columns"] == ["x", "label"]
    assert info["feature_names"] == ["x"]


def test_blank_lines_crlf_and_quotes(tmp_path):
    text = 'x,"name, quoted",label\r\n\r\n' + "".join(f'{i},"v{i % 2}",{i % 2}\r\n' for i in range(20)) + "\r\n"
    info = ingest_csv(write(tmp_path / "d.csv", text), tmp_path / "out")
    assert info["num_rows"] == 20
    assert info["columns"] == ["x", "name, quoted", "label"]


def test_split_is_seeded_and_disjoint(tmp_path):
    text = "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(50))
    write(tmp_path / "d.csv", text)
    ingest_csv(tmp_path / "d.csv", tmp_path / "a", seed=3, val_fraction=0.3)
    ingest_csv(tmp_path / "d.csv", tmp_path / "b", seed=3, val_fraction=0.3)
    ingest_csv(tmp_path / "d.csv", tmp_path / "c", seed=4, val_fraction=0.3)
    a, b, c = load(tmp_path / "a"), load(tmp_path / "b"), load(tmp_path / "c")
    assert len(a["X_val"]) == 15 and len(a["X_train"]) == 35
    assert np.array_equal(a["X_val"], b["X_val"])
    assert not np.array_equal(a["X_val"], c["X_val"])


def test_read_table_returns_header_and_rows(tmp_path):
    header, rows = read_table(write(tmp_path / "d.csv", "a, b ,c\n1,2,3\n\n 4 ,5,6\n"))
    assert header == ["a", "b", "c"]
    assert rows == [["1", "2", "3"], ["4", "5", "6"]]


# -- bad files: a clear message, and nothing left behind ----------------------------------


HEADER = b"a,b,label\n"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        pytest.param(b"", ["empty"], id="empty-file"),
        pytest.param(b"\n\n", ["header"], id="blank-lines-only"),
        pytest.param(HEADER, ["header", "no data rows"], id="header-only"),
        pytest.param(HEADER + b"1,2,x\n3,4,y\n5,6\n7,8,x\n", ["line 4", "2 fields", "header has 3"], id="ragged-short"),
        pytest.param(HEADER + b"1,2,x\n3,4,y,9\n", ["line 3", "4 fields"], id="ragged-long"),
        pytest.param(HEADER + b"1,2,x\n3,4,caf\xe9\n", ["line 3", "UTF-8", "0xe9"], id="latin-1"),
        pytest.param(b"a,b,l\xff\n1,2,x\n", ["line 1", "UTF-8"], id="bad-utf8-header"),
        pytest.param(HEADER + b"1,2,x\n3,\x004,y\n", ["line 3", "NUL"], id="nul-byte"),
        pytest.param(HEADER + b"1,2,x\n3,4,x\n5,6,x\n", ["single class", "'x'", "label"], id="single-class"),
        pytest.param(HEADER + b"1,2,x\n3,4,\n5,6,y\n", ["line 3", "label", "empty"], id="empty-label"),
        pytest.param(HEADER + b"1,2,x\n3,,y\n5,6,y\n", ["line 3", "column 'b'", "empty value"], id="empty-feature"),
        pytest.param(HEADER + b'1,2,x\n3,"4,y\n', ["line"], id="unterminated-quote"),
        pytest.param(HEADER + b'1,2,x\n3,"4"z,y\n', ["line 3"], id="bad-quoting"),
        pytest.param(b"a,a,label\n1,2,x\n3,4,y\n", ["duplicate", "a"], id="duplicate-columns"),
        pytest.param(b"a,,label\n1,2,x\n3,4,y\n", ["column 2", "empty name"], id="empty-column-name"),
        pytest.param(b"only\n1\n2\n", ["label column", "delimiter"], id="one-column"),
        pytest.param(b"a,label\n1.5,2.25\n", ["only 1 rows", "too few"], id="too-few-rows"),
    ],
)
def test_bad_files(tmp_path, content, words):
    src = write(tmp_path / "d.csv", content)
    with pytest.raises(IngestError) as exc:
        ingest_csv(src, tmp_path / "out")
    msg = str(exc.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert_nothing_left(tmp_path)


def test_line_numbers_count_blank_lines_and_quoted_newlines(tmp_path):
    content = HEADER + b'1,2,x\n\n"3\n",4,y\n5,6,\n'  # the empty label is on line 6
    with pytest.raises(IngestError) as exc:
        ingest_csv(write(tmp_path / "d.csv", content), tmp_path / "out")
    assert "line 6:" in str(exc.value)
    content = HEADER + b"1,2,x\n\n\n3,,y\n"  # the empty cell is on line 5
    with pytest.raises(IngestError) as exc:
        ingest_csv(write(tmp_path / "d.csv", content), tmp_path / "out")
    assert "line 5, column 'b'" in str(exc.value)
    assert_nothing_left(tmp_path)


def test_non_utf8_names_line_and_offset(tmp_path):
    content = HEADER + b"1,2,x\n" + b"3,4,\x96\n"
    with pytest.raises(IngestError) as exc:
        ingest_csv(write(tmp_path / "d.csv", content), tmp_path / "out")
    msg = str(exc.value)
    assert msg.startswith("line 3: not valid UTF-8")
    assert f"file offset {len(HEADER) + 6 + 4}" in msg
    assert_nothing_left(tmp_path)


def test_missing_label_column_lists_the_columns(tmp_path):
    src = write(tmp_path / "d.csv", "alpha,beta,gamma\n1,2,3\n4,5,6\n")
    with pytest.raises(IngestError) as exc:
        ingest_csv(src, tmp_path / "out", label_column="target")
    msg = str(exc.value)
    assert "'target'" in msg
    assert "alpha, beta, gamma" in msg
    assert_nothing_left(tmp_path)


def test_regression_with_a_text_label_names_the_line(tmp_path):
    src = write(tmp_path / "d.csv", "x,y\n1,0.5\n2,1.5\n3,oops\n")
    with pytest.raises(IngestError) as exc:
        ingest_csv(src, tmp_path / "out", task="regression")
    assert "line 4" in str(exc.value) and "'oops'" in str(exc.value)
    assert_nothing_left(tmp_path)


def test_too_many_categories_names_the_column_and_line(tmp_path):
    text = "x,code,label\n" + "".join(f"{i},c{i},{i % 2}\n" for i in range(150))
    with pytest.raises(IngestError) as exc:
        ingest_csv(write(tmp_path / "d.csv", text), tmp_path / "out")
    msg = str(exc.value)
    assert "'code'" in msg and "line 2" in msg and "more than 100 distinct" in msg
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
def test_bad_val_fraction(tmp_path, fraction):
    text = "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20))
    with pytest.raises(IngestError):
        ingest_csv(write(tmp_path / "d.csv", text), tmp_path / "out", val_fraction=fraction)
    assert_nothing_left(tmp_path)


def test_a_stale_partial_dir_is_replaced(tmp_path):
    (tmp_path / "out.partial").mkdir()
    (tmp_path / "out.partial" / "junk").write_text("old")
    text = "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20))
    ingest_csv(write(tmp_path / "d.csv", text), tmp_path / "out")
    assert not (tmp_path / "out.partial").exists()
    assert not (tmp_path / "out" / "junk").exists()


def test_a_stored_upload_without_extension_gets_its_delimiter_from_the_content(tmp_path):
    # The web tier stores uploads as <id>.upload: the delimiter is sniffed from the first line.
    for name, sep in (("tab.upload", "\t"), ("semi.upload", ";"), ("comma.upload", ",")):
        text = sep.join(["x", "y", "label"]) + "\n" + "".join(f"{i}{sep}{i % 3}{sep}{i % 2}\n" for i in range(20))
        info = ingest_csv(write(tmp_path / name, text), tmp_path / f"out-{name}")
        assert info["feature_names"] == ["x", "y"] and info["num_columns"] == 3, name


def test_a_column_named_label_is_the_default_label(tmp_path):
    text = "x,label,z\n" + "".join(f"{i},{i % 2},{i * 3}\n" for i in range(20))
    info = ingest_csv(write(tmp_path / "d.csv", text), tmp_path / "out")
    assert info["label_column"] == "label" and info["feature_names"] == ["x", "z"]


# -- caps (lowered here; the real ones are millions) -----------------------------------------------


@pytest.fixture
def csv_limit_restored():
    """iter_table sets the csv module's process-wide field limit; put it back for other tests."""
    import csv

    before = csv.field_size_limit()
    yield
    csv.field_size_limit(before)


def _rows(n):
    return "x,label\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(n))


def test_row_cap_names_the_line_and_the_limit(tmp_path, monkeypatch):
    from workers.datasets import tabular

    monkeypatch.setattr(tabular, "MAX_ROWS", 6)
    assert ingest_csv(write(tmp_path / "d.csv", _rows(6)), tmp_path / "ok")["num_rows"] == 6  # at the cap: fine
    shutil.rmtree(tmp_path / "ok")
    with pytest.raises(IngestError) as exc:
        ingest_csv(write(tmp_path / "d.csv", _rows(7)), tmp_path / "out")
    assert str(exc.value) == "line 8: row 7 is past the limit of 6 rows"
    assert_nothing_left(tmp_path)


def test_column_cap(tmp_path, monkeypatch):
    from workers.datasets import tabular

    monkeypatch.setattr(tabular, "MAX_COLUMNS", 3)
    src = write(tmp_path / "d.csv", "a,b,c,label\n" + "1,2,3,x\n4,5,6,y\n" * 5)
    with pytest.raises(IngestError) as exc:
        ingest_csv(src, tmp_path / "out")
    assert str(exc.value) == "4 columns; at most 3 are supported"
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize("where", ["header", "row"])
def test_field_size_cap(tmp_path, monkeypatch, csv_limit_restored, where):
    from workers.datasets import tabular

    monkeypatch.setattr(tabular, "MAX_FIELD_BYTES", 50)
    long = "w" * 51
    content = (f"{long},label\n1,x\n2,y\n" if where == "header" else "x,label\n1,x\n" + f"{long},y\n" + "3,x\n")
    with pytest.raises(IngestError) as exc:
        ingest_csv(write(tmp_path / "d.csv", content), tmp_path / "out")
    line = 1 if where == "header" else 3
    assert str(exc.value) == f"line {line}: a field is longer than 50 bytes, the limit for one cell (is a quote left open?)"
    assert_nothing_left(tmp_path)
