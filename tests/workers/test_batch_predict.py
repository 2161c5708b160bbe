"""Try many (workers/serving/batch.py) on real ingested data and exported models: one CSV row per
input, equal to the single tries; bad rows named with their line; unreadable files refused."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from tests import datagen  # noqa: E402
from tests.workers.test_inference import trained  # noqa: E402
from workers.serving import predict as single  # noqa: E402
from workers.serving.batch import predict_file  # noqa: E402
from workers.serving.predict import InputError  # noqa: E402


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tab")
    rows = ["x1,colour,x2,label"]
    rng = np.random.default_rng(1)
    for i in range(120):
        a, b = rng.normal(size=2)
        colour = ["red", "green", "blue"][i % 3]
        rows.append(f"{a:.4f},{colour},{b:.4f},{'yes' if a + (colour == 'red') > 0.3 else 'no'}")
    src = tmp / "t.csv"
    src.write_text("\n".join(rows) + "\n")
    ds, art = trained(tmp, "tabular", src, "mlp", {"hidden_sizes": "8"})
    return tmp, src, ds, art


def _read(path):
    return list(csv.DictReader(open(path, newline="", encoding="utf-8")))


def test_every_row_is_predicted_as_a_single_try_would(table):
    tmp, src, _, art = table
    # Columns in another order, the label kept (ignored), a blank line (skipped, as the ingest does).
    lines = src.read_text().splitlines()
    inputs = tmp / "many.csv"
    body = ["label,x2,colour,x1"] + [",".join(reversed(line.split(","))) for line in lines[1:41]]
    inputs.write_text("\n".join(body[:10] + [""] + body[10:]) + "\n")
    seen = []
    result = predict_file(art, inputs, tmp / "out.csv", progress=lambda d, t: seen.append((d, t)))
    assert result == {"rows": 40, "failed": 0, "problems": []}
    out = _read(tmp / "out.csv")
    assert len(out) == 40 and seen[0] == (0, 40)
    assert out[0]["line"] == "line 2" and out[8]["line"] == "line 10" and out[9]["line"] == "line 12"
    for line, row in zip(lines[1:41], out):
        x1, colour, x2, _ = line.split(",")
        top = single.predict(art, {"features": {"x1": x1, "colour": colour, "x2": x2}})["top"][0]
        assert row["prediction"] == top["label"]
        assert abs(float(row["confidence"]) - top["confidence"]) < 1e-4


def test_bad_rows_are_named_and_the_others_predicted(table):
    tmp, _, _, art = table
    inputs = tmp / "bad.csv"
    inputs.write_text("x1,colour,x2\n0.1,red,0.2\nabc,red,0.2\n0.3,purple,0.1\n=1+1,blue,2\n0.5,green,0.5\n")
    result = predict_file(art, inputs, tmp / "bad-out.csv")
    assert result["rows"] == 5 and result["failed"] == 3
    assert result["problems"][0].startswith("line 3: 'x1': 'abc' is not a number")
    assert "line 4: 'colour': 'purple' is not one of the training values" in result["problems"][1]
    out = _read(tmp / "bad-out.csv")
    assert [r["line"] for r in out] == ["line 2", "line 3", "line 4", "line 5", "line 6"]
    assert out[0]["prediction"] and not out[0]["error"] and out[1]["error"] and not out[1]["prediction"]
    assert out[3]["error"].startswith("'") or "=1+1" not in out[3]["error"][:1]  # never a formula


def test_unreadable_files_are_refused_with_the_ingest_messages(table):
    tmp, _, _, art = table
    cases = {
        "nul.csv": (b"x1,colour,x2\n1,red,\x002\n", "line 2: contains a NUL byte"),
        "latin.csv": ("x1,colour,x2\n1,r\u00e9d,2\n".encode("latin-1"), "line 2: not valid UTF-8"),
        "short.csv": (b"x1,colour,x2\n1,red\n", "line 2: 2 fields, but the header has 3"),
        "cols.csv": (b"x1,x2\n1,2\n", "lacks the training column\\(s\\) 'colour'"),
        "empty.csv": (b"", "the file is empty"),
    }
    for name, (data, message) in cases.items():
        (tmp / name).write_bytes(data)
        with pytest.raises(InputError, match=message):
            predict_file(art, tmp / name, tmp / f"{name}.out")
        assert not (tmp / f"{name}.out").exists() and not (tmp / f"{name}.out.partial").exists()


def test_a_zip_of_images(tmp_path):
    ds, art = trained(tmp_path, "image", datagen.digits_png_zip(tmp_path / "d.zip", limit=120), "cnn")
    batch = tmp_path / "many.zip"
    pngs = []
    with zipfile.ZipFile(tmp_path / "d.zip") as src, zipfile.ZipFile(batch, "w") as out:
        for info in [i for i in src.infolist() if i.filename.endswith(".png")][:6]:
            data = src.read(info)
            pngs.append(data)
            out.writestr("any/folder/" + info.filename.replace("/", "_"), data)
        out.writestr("broken.png", b"not an image")
        out.writestr("notes.txt", b"ignored")
    result = predict_file(art, batch, tmp_path / "out.csv")
    assert result["rows"] == 7 and result["failed"] == 1 and "broken.png" in result["problems"][0]
    out = _read(tmp_path / "out.csv")
    for data, row in zip(pngs, out):
        assert row["prediction"] == single.predict(art, {}, data)["top"][0]["label"]
    with zipfile.ZipFile(tmp_path / "slip.zip", "w") as z:
        z.writestr("../evil.png", b"x")
    with pytest.raises(InputError, match="'..' in the path"):
        predict_file(art, tmp_path / "slip.zip", tmp_path / "slip.csv")


def test_texts_in_jsonl_and_csv(tmp_path):
    src = tmp_path / "reviews.csv"
    rows = ["text,label"] + [f"{'great fine good' if i % 2 else 'bad awful poor'} {i},{'pos' if i % 2 else 'neg'}"
                             for i in range(80)]
    src.write_text("\n".join(rows) + "\n")
    ds, art = trained(tmp_path, "text", src, "rnn", {"hidden_size": 8})
    (tmp_path / "many.jsonl").write_text(json.dumps({"text": "great good"}) + "\n" + json.dumps({"text": ""}) + "\n")
    result = predict_file(art, tmp_path / "many.jsonl", tmp_path / "out.csv")
    assert result["rows"] == 2 and result["failed"] == 1
    out = _read(tmp_path / "out.csv")
    assert out[0]["prediction"] == single.predict(art, {"text": "great good"})["top"][0]["label"]
    (tmp_path / "one.csv").write_text('text\n"bad, awful"\ngood\n')
    assert predict_file(art, tmp_path / "one.csv", tmp_path / "out2.csv")["rows"] == 2


def test_table_hints_read_back_validation_rows_and_ranges(table):
    from webapp.inference.table import table_hints

    _, src, ds, art = table
    info = json.loads((art / "config.json").read_text())["dataset"]
    hints = table_hints(ds, info)
    assert len(hints["rows"]) == 5
    row = hints["rows"][0]["values"]
    assert row["colour"] in ("red", "green", "blue") and hints["rows"][0]["truth"] in ("yes", "no")
    # The values read back are the file's (to the printed precision).
    assert any(f"{float(row['x1']):.4f}," in line and f",{row['colour']}," in line for line in src.read_text().splitlines())
    assert hints["ranges"]["colour"] == "one of blue, green, red" and hints["ranges"]["x1"].startswith("typically ")
    assert table_hints(None, info) == {"rows": [], "ranges": {}}
