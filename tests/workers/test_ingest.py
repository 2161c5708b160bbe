from __future__ import annotations

import json

import numpy as np
import pytest

from workers.datasets.tabular import IngestError, ingest_csv


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def nothing_left(tmp_path):
    return not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_classification_with_string_labels_and_one_hot(tmp_path):
    rows = "".join(f"{i},{i % 7},{'red' if i % 2 else 'blue'},{'cat' if i % 3 else 'dog'}\n" for i in range(50))
    info = ingest_csv(write(tmp_path / "d.csv", "\ufeffa,b,color,animal\n" + rows), tmp_path / "out")
    assert info["task"] == "classification" and info["classes"] == ["cat", "dog"]
    assert info["num_rows"] == 50 and info["num_columns"] == 4 and info["num_classes"] == 2
    assert info["class_counts"] == {"cat": 33, "dog": 17}
    assert info["feature_names"] == ["a", "b", "color=blue", "color=red"] and info["input_shape"] == [4]
    assert info["num_train"] + info["num_val"] == 50 and info["num_val"] == 10
    X = np.load(tmp_path / "out" / "X_train.npy", allow_pickle=False)
    assert X.dtype == np.float32 and X.shape == (40, 4) and np.allclose(X.mean(0), 0, atol=1e-5)
    assert json.loads((tmp_path / "out" / "info.json").read_text())["label_column"] == "animal"


def test_integer_labels_regression_and_tsv(tmp_path):
    info = ingest_csv(write(tmp_path / "a.csv", "x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(30))), tmp_path / "a")
    assert info["task"] == "classification" and info["classes"] == ["0", "1", "2"]
    info = ingest_csv(write(tmp_path / "b.tsv", "x\tz\ty\n" + "".join(f"{i}\t{i*2}\t{i * 0.37:.3f}\n" for i in range(30))),
                      tmp_path / "b")
    assert info["task"] == "regression" and info["num_outputs"] == 1 and "target_normalization" in info
    info = ingest_csv(write(tmp_path / "c.csv", "label,x\n" + "".join(f"{i % 2},{i}\n" for i in range(30))),
                      tmp_path / "c", label_column="label")
    assert info["label_column"] == "label" and info["feature_names"] == ["x"]


@pytest.mark.parametrize("content,message", [
    (b"", "the file is empty"),
    (b"a,b,label\n", "no data rows"),
    (b"a,b,label\n1,2,x\n3,4\n", "line 3: 2 fields, but the header has 3"),
    (b"a,b,label\n1,2,x\n3,4,\xe9t\xe9\n", "line 3: not valid UTF-8"),
    (b"a,b,label\n1,2,x\n3,\x004,y\n", "line 3: contains a NUL byte"),
    (b"a,b,label\n1,2,x\n3,4,x\n", "single class"),
    (b"a,b,label\n1,2,x\n3,4,\n", "line 3: the label ('label') is empty"),
    (b"a,b,label\n1,,x\n3,4,y\n", "line 2, column 'b': empty value"),
    (b"a,a,label\n1,2,x\n", "duplicate column names: a"),
    (b"a\n1\n", "need at least one feature column"),
])
def test_bad_files_raise_a_clear_error_and_leave_nothing(tmp_path, content, message):
    with pytest.raises(IngestError) as exc:
        ingest_csv(write(tmp_path / "d.csv", content), tmp_path / "out")
    assert message in str(exc.value)
    assert nothing_left(tmp_path)


def test_missing_label_column_lists_the_columns(tmp_path):
    with pytest.raises(IngestError) as exc:
        ingest_csv(write(tmp_path / "d.csv", "a,b,c\n1,2,3\n4,5,6\n"), tmp_path / "out", label_column="target")
    assert "label column 'target' does not exist; columns are: a, b, c" in str(exc.value)
    assert nothing_left(tmp_path)


def test_split_is_seeded(tmp_path):
    text = "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(100))
    ingest_csv(write(tmp_path / "d.csv", text), tmp_path / "o1", seed=5)
    ingest_csv(tmp_path / "d.csv", tmp_path / "o2", seed=5)
    assert np.array_equal(np.load(tmp_path / "o1" / "X_val.npy"), np.load(tmp_path / "o2" / "X_val.npy"))


def test_too_few_rows_to_split(tmp_path):
    with pytest.raises(IngestError) as exc:
        ingest_csv(write(tmp_path / "d.csv", "a,label\n1,x\n2,y\n"), tmp_path / "out", val_fraction=0.9)
    assert "too few to split" in str(exc.value)
    assert nothing_left(tmp_path)
