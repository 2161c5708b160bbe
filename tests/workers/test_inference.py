"""Try-the-model preprocessing matches training, on real ingested data and exported models;
bad input gets a clear message; repeated tries use the loaded model."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from tests import datagen  # noqa: E402
from workers.serving import predict as inference  # noqa: E402
from workers.datasets import ingest  # noqa: E402
from workers.training import TrainSpec, run  # noqa: E402
from workers.serving.predict import InputError  # noqa: E402


def trained(tmp, kind, source, arch, model=None, options=None, epochs=1):
    ds = tmp / "ds"
    ingest(kind, source, ds, options or {})
    out = tmp / "job"
    spec = TrainSpec(arch, model or {}, {"epochs": epochs, "batch_size": 32, "learning_rate": 0.01}, str(ds),
                     str(out), device="cpu", log_interval=1e9)
    result = run(spec)
    assert result.status == "succeeded"
    return ds, out / "artifacts"


def norm_cache(ds, name):
    return np.load(ds / f"{name}.npy", allow_pickle=False)


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tab")
    rows = ["x1,colour,x2,label"]
    rng = np.random.default_rng(0)
    for i in range(120):
        a, b = rng.normal(size=2)
        colour = ["red", "green", "blue"][i % 3]
        rows.append(f"{a:.4f},{colour},{b:.4f},{'yes' if a + (colour == 'red') > 0.3 else 'no'}")
    src = tmp / "t.csv"
    src.write_text("\n".join(rows) + "\n")
    ds, art = trained(tmp, "tabular", src, "mlp", {"hidden_sizes": "8"})
    return src, ds, art


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("img")
    return trained(tmp, "image", datagen.digits_png_zip(tmp / "d.zip", limit=200), "cnn")


def test_tabular_features_prepared_like_the_cache(tabular):
    src, ds, art = tabular
    info = json.loads((art / "config.json").read_text())["dataset"]
    assert inference.raw_columns(info) == ["x1", "colour", "x2"]
    lines = src.read_text().splitlines()[1:]
    n = len(lines)
    # Which source lines became training rows: the ingest's own split (stratified by the label,
    # seed 0, 20 % held out), given the labels as the class indices the cache stores.
    from workers.datasets.common import seeded_split

    classes = [str(c) for c in info["classes"]]
    y = np.array([classes.index(line.rsplit(",", 1)[1]) for line in lines])
    train_idx, _ = seeded_split(n, 0.2, 0, y, exact_total=True)
    X_train = norm_cache(ds, "X_train")
    for row in (0, 5, 17):
        x1, colour, x2, _ = lines[train_idx[row]].split(",")
        got = inference.prepare_features({"x1": x1, "colour": colour, "x2": x2}, info)
        np.testing.assert_allclose(got[0].numpy(), X_train[row], rtol=1e-5, atol=1e-5)
        got_line = inference.prepare_features(f"{x1}, {colour}, {x2}", info)
        np.testing.assert_allclose(got_line.numpy(), got.numpy())
    result = inference.predict(art, {"features": {"x1": "2.0", "colour": "red", "x2": "0"}})
    assert result["type"] == "classes" and {c["label"] for c in result["top"]} == {"yes", "no"}
    assert abs(sum(c["confidence"] for c in result["top"]) - 1) < 1e-4


@pytest.mark.parametrize("values,message", [
    ({"x1": "1", "colour": "red"}, "missing value for 'x2'"),
    ({"x1": "1", "colour": "purple", "x2": "0"}, "not one of the training values"),
    ({"x1": "one", "colour": "red", "x2": "0"}, "is not a number"),
    ({"x1": "nan", "colour": "red", "x2": "0"}, "finite"),
    ("1, red", "expected 3 feature values"),
    ("", "expected 3 feature values"),
])
def test_tabular_bad_input(tabular, values, message):
    with pytest.raises(InputError, match=message):
        inference.predict(tabular[2], {"features": values})


def test_image_prepared_like_the_training_batches(images):
    ds, art = images
    info = json.loads((art / "config.json").read_text())["dataset"]
    X = norm_cache(ds, "X_val")[:3]  # uint8 [N, 1, 8, 8]
    mean, std = info["normalization"]["mean"][0], info["normalization"]["std"][0]
    for row in X:
        buf = io.BytesIO()
        Image.fromarray(row[0]).save(buf, format="PNG")
        got = inference.prepare_image(buf.getvalue(), info)
        np.testing.assert_allclose(got[0].numpy(), (row.astype(np.float32) / 255 - mean) / std, atol=1e-5)
    # an RGB JPEG of another size is converted to the training channels and size
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, format="JPEG")
    assert tuple(inference.prepare_image(buf.getvalue(), info).shape) == (1, 1, 8, 8)
    result = inference.predict(art, {}, image=buf.getvalue())
    assert result["type"] == "classes" and len(result["top"]) == 5


def test_image_bad_input(images, monkeypatch):
    art = images[1]
    with pytest.raises(InputError, match="not an image"):
        inference.predict(art, {}, image=b"GIF89a this is not a PNG")
    with pytest.raises(InputError, match="upload an image"):
        inference.predict(art, {})
    buf = io.BytesIO()
    Image.new("L", (64, 64)).save(buf, format="GIF")
    with pytest.raises(InputError, match="not an image"):
        inference.predict(art, {}, image=buf.getvalue())
    buf = io.BytesIO()
    Image.new("L", (64, 64)).save(buf, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > 2 × the limit: a bomb
    with pytest.raises(InputError, match="decompression bomb"):
        inference.predict(art, {}, image=buf.getvalue())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # above the limit: Pillow only warns; refused too
    with pytest.raises(InputError, match="decompression bomb"):
        inference.predict(art, {}, image=buf.getvalue())


def test_text_tokenized_like_the_cache(tmp_path):
    ds, art = trained(tmp_path, "text", datagen.sentiment_csv(tmp_path / "s.csv", n=200), "transformer",
                      {"layers": 1, "heads": 2, "width": 16, "ffn_size": 32})
    info = json.loads((art / "config.json").read_text())["dataset"]
    vocab = json.loads((art / "vocab.json").read_text())
    index = {t: i for i, t in enumerate(vocab)}
    texts = json.loads((ds / "val_texts.json").read_text())
    X = norm_cache(ds, "X_val")
    for i in range(5):
        got, _ = inference.prepare_text(texts[i], info, index)
        assert got[0].tolist() == X[i].tolist()
    result = inference.predict(art, {"text": "A wonderful, superb film. Zyzzyva!"})
    assert result["type"] == "classes" and {c["label"] for c in result["top"]} == {"pos", "neg"}
    assert any("zyzzyva" in n for n in result["notes"])
    for bad, message in (("", "type a text"), ("   ", "type a text"), ("x" * 20_001, "longer than")):
        with pytest.raises(InputError, match=message):
            inference.predict(art, {"text": bad})


def test_sequence_scaled_like_the_cache(tmp_path):
    src = datagen.sequence_csv(tmp_path / "q.csv", n=90, length=12)
    ds, art = trained(tmp_path, "sequence", src, "cnn1d")
    info = json.loads((art / "config.json").read_text())["dataset"]
    X_train = norm_cache(ds, "X_train")
    mean, std = info["normalization"]["mean"][0], info["normalization"]["std"][0]
    raw = X_train[0, :, 0] * std + mean  # back to the file's units
    got = inference.prepare_sequence(",".join(f"{v:.7f}" for v in raw), info)
    np.testing.assert_allclose(got[0].numpy(), X_train[0], atol=1e-4)
    assert inference.predict(art, {"sequence": ",".join(map(str, raw))})["type"] == "classes"
    with pytest.raises(InputError, match="expected 12 numbers"):
        inference.predict(art, {"sequence": "1,2,3"})
    with pytest.raises(InputError, match="enter 12"):
        inference.predict(art, {"sequence": ""})
    with pytest.raises(InputError, match="value 2.*not a number"):
        inference.predict(art, {"sequence": "1,x" + ",1" * 10})


def test_gpt_generates_from_a_prompt(tmp_path):
    _, art = trained(tmp_path, "corpus", datagen.repetitive_corpus(tmp_path / "c.txt", repeats=40), "gpt",
                     {"layers": 1, "heads": 2, "width": 16, "block_size": 16})
    a = inference.predict(art, {"prompt": "the quick", "temperature": "0", "length": "30"})
    b = inference.predict(art, {"prompt": "the quick", "temperature": "0", "length": "30"})
    assert a["type"] == "text" and a["prompt"] == "the quick" and len(a["generated"]) == 30
    assert a["generated"] == b["generated"]  # temperature 0: the most likely token each time
    c = inference.predict(art, {"prompt": "the quick", "temperature": "1.0", "top_k": "3", "length": "10"}, seed=1)
    assert len(c["generated"]) == 10
    with pytest.raises(InputError, match="give a prompt"):
        inference.predict(art, {"prompt": ""})
    with pytest.raises(InputError, match="none of the prompt's characters"):
        inference.predict(art, {"prompt": "ZZZ@@"})
    with pytest.raises(InputError, match="length must be between 1 and 1000"):
        inference.predict(art, {"prompt": "the", "length": "5000"})


def test_loaded_models_are_cached(tabular):
    art = tabular[2]
    inference.load(art)
    hits = inference.stats["hits"]
    loads = inference.stats["loads"]
    inference.load(art)
    assert inference.stats["hits"] == hits + 1 and inference.stats["loads"] == loads


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no exported model"):
        inference.predict(tmp_path, {"text": "x"})
