"""Every dataset kind through the upload page, the ingest task (called in-process here; the real
worker runs it in tests/integration/test_kinds.py) and the dataset page; bad files of every kind
leave no dataset row and no files, only the reason, shown to the owner."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests import datagen
from webapp.datasets.models import Dataset, IngestFailure
from workers.adapters.tasks import ingest_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_alice(alice):
    c = Client()
    c.force_login(alice)
    return c


def files_left() -> list[str]:
    root = Path(settings.DATA_DIR)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def upload(client, path: Path, **fields) -> Dataset:
    r = client.post("/datasets/", {"file": SimpleUploadedFile(path.name, path.read_bytes()), **fields})
    assert r.status_code == 302, r.content.decode()[:2000]
    return Dataset.objects.latest("created_at")


def ingest(ds: Dataset) -> Dataset:
    result = ingest_dataset(str(ds.pk))
    assert result == "ready", IngestFailure.objects.filter(pk=ds.pk).values_list("error", flat=True).first()
    ds.refresh_from_db()
    return ds


def tiny_png_zip(path: Path, colour: bool = False) -> Path:
    from PIL import Image

    with zipfile.ZipFile(path, "w") as zf:
        for cls, shade in (("dark", 30), ("light", 220)):
            for i in range(6):
                buf = io.BytesIO()
                Image.new("RGB" if colour else "L", (10, 10), (shade, 0, i) if colour else shade + i).save(buf, "PNG")
                zf.writestr(f"{cls}/{i}.png", buf.getvalue())
    return path


KINDS = {
    "text": (lambda d: datagen.sentiment_jsonl(d / "reviews.jsonl", n=60), {}, ["Sample texts", "pos", "Tokens per text"]),
    "corpus": (lambda d: datagen.repetitive_corpus(d / "verses.txt", repeats=5), {"level": "char"},
               ["Beginning of the text", "the quick brown fox", "Most common characters"]),
    "sequence": (lambda d: datagen.sequence_csv(d / "series.csv", n=60, length=12), {"kind": "sequence"},
                 ["Example sequences", "<polyline", "First rows", "12 steps"]),
    "image": (lambda d: tiny_png_zip(d / "shades.zip", colour=True), {"channels": "grayscale", "image_size": "8"},
              ["Preview", "/previews/0_0.png", "8×8 px, grayscale"]),
    "tabular": (lambda d: d / "t.csv", {}, ["First rows"]),
    "chat": (lambda d: datagen.chat_jsonl(d / "sums.jsonl", n=20), {},
             ["First conversations", '<strong class="role">assistant</strong>', "add ", "conversations",
              "the loss on the assistant's replies only"]),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_is_detected_ingested_and_previewed(client_alice, alice, sent_tasks, tmp_path, kind):
    make, fields, shown = KINDS[kind]
    (tmp_path / "t.csv").write_text("a,b,label\n" + "".join(f"{i},{i * 2},{'xy'[i % 2]}\n" for i in range(20)))
    ds = upload(client_alice, make(tmp_path), **fields)
    assert ds.kind == kind and ds.status == "ingesting"
    ds = ingest(ds)
    assert ds.status == "ready", ds.error
    assert ds.info["kind"] == kind and ds.size_bytes > 0
    html = client_alice.get(f"/datasets/{ds.pk}/").content.decode()
    for text in shown:
        assert text in html, text
    if kind not in ("corpus", "chat"):
        assert "Class balance" in html
    train = ds.info["num_train_tokens"] if kind == "corpus" else ds.info["num_train"]
    assert f"{train}</span> train" in html
    # The cache and the kept original are the only files; nothing is left in uploads.
    left = files_left()
    assert all(p.startswith(f"datasets/{ds.pk}/") for p in left), left
    assert any(p.startswith(f"datasets/{ds.pk}/source.") for p in left)


def test_image_options_reach_the_ingest(client_alice, alice, sent_tasks, tmp_path):
    ds = upload(client_alice, tiny_png_zip(tmp_path / "c.zip", colour=True), channels="rgb", image_size="16",
                val_fraction="0.5")
    assert ds.options == {"val_fraction": 0.5, "image_size": 16, "channels": "RGB"}
    ds = ingest(ds)
    assert ds.info["input_shape"] == [3, 16, 16] and ds.info["num_val"] == 6


def test_text_column_options_reach_the_ingest(client_alice, alice, sent_tasks, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("id,body,stars\n" + "".join(f"{i},{'good' if i % 2 else 'bad'} thing {i},{i % 2}\n"
                                                for i in range(30)))
    ds = upload(client_alice, path, kind="text", text_column="body", label_column="stars", task="auto")
    assert ds.options == {"val_fraction": 0.2, "label_column": "stars", "text_column": "body"}
    ds = ingest(ds)
    assert ds.info["text_column"] == "body" and ds.info["classes"] == ["0", "1"]


@pytest.mark.parametrize(("fields", "message"), [
    ({"kind": "image", "channels": "cmyk"}, "channels must be auto, grayscale or rgb"),
    ({"kind": "text", "task": "regression"}, "text datasets are for classification"),
    ({"val_fraction": "1.5"}, "validation fraction"),
])
def test_bad_options_are_refused_in_the_request(client_alice, sent_tasks, tmp_path, fields, message):
    name = "x.zip" if fields.get("kind") == "image" else "x.csv"
    content = b"PK\x03\x04 not really" if name.endswith(".zip") else b"text,label\nhi,a\n"
    r = client_alice.post("/datasets/", {"file": SimpleUploadedFile(name, content), **fields})
    assert r.status_code == 400 and message in r.content.decode()
    assert Dataset.objects.count() == 0 and sent_tasks == [] and files_left() == []


@pytest.mark.parametrize(("filename", "content", "message"), [
    ("d.txt", b"x" * 200 + b"\ncaf\xe9\n", "not valid UTF-8 (byte 0xe9 at line 2, offset 204)"),
    ("d.jsonl", b"text,label\nhello,a\n", "not JSON"),
    ("d.csv", b'{"text": "hi", "label": "a"}\n', "the content is JSON"),
    ("d.txt", b"\xff\xfeh\x00i\x00", "UTF-16"),
    ("d.zip", b"text,label\nhello,a\n", "not a ZIP archive"),
])
def test_content_that_does_not_match_the_name_is_refused(client_alice, sent_tasks, filename, content, message):
    r = client_alice.post("/datasets/", {"file": SimpleUploadedFile(filename, content)})
    assert r.status_code == 400 and message in r.content.decode()
    assert Dataset.objects.count() == 0 and files_left() == []


def _zip(entries: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


BAD = {
    "text-single-class": ("t.csv", b"text,label\n" + b"nice words,a\n" * 5, {"kind": "text"}, "single class"),
    "text-no-label-column": ("t.csv", b"text,label\n" + b"nice words,a\nbad words,b\n" * 5,
                             {"kind": "text", "label_column": "stars"}, "label column 'stars' does not exist"),
    "text-ragged": ("t.csv", b"text,label\nnice,a\nbad\n", {"kind": "text"}, "line 3: 1 fields"),
    # Past the first 64 KiB that the upload request checks: found by the ingest, with its place.
    "corpus-latin-1": ("c.txt", b"x" * 70_000 + b"\ncaf\xe9\n", {"kind": "corpus"},
                       "not valid UTF-8: byte 0xe9 at line 2, column 4 (byte offset 70004)"),
    "corpus-too-short": ("c.txt", b"tiny", {"kind": "corpus"}, "too short"),
    "sequence-not-a-number": ("s.csv", b"t0,t1,label\n1,2,a\n1,oops,b\n", {"kind": "sequence"},
                              "line 3, column 't1': 'oops' is not a number"),
    "tabular-latin-1-past-the-sniffed-head": ("d.csv", b"a,label\n" + b"1,x\n2,y\n" * 20_000 + b"3,caf\xe9\n", {},
                                              "not valid UTF-8"),
    "image-zip-slip": ("i.zip", _zip({"a/1.png": b"x", "../evil.png": b"x"}), {}, "'..' in the path"),
    "image-nested-zip": ("i.zip", _zip({"a/1.png": b"x", "b/inner.zip": b"PK"}), {}, "nested archives"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_leave_no_row_and_no_files_but_the_reason(client_alice, alice, bob, sent_tasks, tmp_path, case):
    filename, content, fields, message = BAD[case]
    path = tmp_path / filename
    path.write_bytes(content)
    ds = upload(client_alice, path, **fields)
    assert ingest_dataset(str(ds.pk)) == "failed"
    assert not Dataset.objects.exists()
    assert files_left() == []  # no cache, no .partial, no upload
    failure = IngestFailure.objects.get(pk=ds.pk)
    assert message in failure.error and failure.error.startswith(f"{filename}: ")
    assert failure.owner == alice and failure.original_filename == filename
    # The owner reads the reason on the datasets page (the dataset page, if still open, sends them there).
    r = client_alice.get(f"/datasets/{ds.pk}/")
    assert r.status_code == 302 and r["Location"] == "/datasets/"
    html = client_alice.get("/datasets/").content.decode()
    assert 'id="ingest-failures"' in html and message in html.replace("&#x27;", "'")
    # The API answers 404 (no such dataset) and says why, to the owner only.
    r = client_alice.get(f"/api/datasets/{ds.pk}/")
    assert r.status_code == 404 and r.json()["status"] == "failed" and message in r.json()["error"]
    other = Client()
    other.force_login(bob)
    r = other.get(f"/api/datasets/{ds.pk}/")
    assert r.status_code == 404 and "error" not in r.content.decode() and "failed" not in r.content.decode()
    assert other.get(f"/datasets/{ds.pk}/").status_code == 404
    assert message not in other.get("/datasets/").content.decode()
    # Dismissed, nothing at all remains.
    assert client_alice.post(f"/datasets/failures/{ds.pk}/dismiss/").status_code == 302
    assert not IngestFailure.objects.exists() and files_left() == []
    assert client_alice.get(f"/api/datasets/{ds.pk}/").content == other.get(f"/api/datasets/{ds.pk}/").content


def test_api_accepts_the_options(alice, sent_tasks, tmp_path):
    c = Client()
    c.force_login(alice)
    zip_path = tiny_png_zip(tmp_path / "g.zip")
    r = c.post("/api/datasets/", {"file": SimpleUploadedFile("g.zip", zip_path.read_bytes()), "channels": "rgb",
                                  "image_size": 12, "val_fraction": 0.25})
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["kind"] == "image" and body["options"] == {"val_fraction": 0.25, "image_size": 12, "channels": "RGB"}
    ds = ingest(Dataset.objects.get(pk=body["id"]))
    assert ds.info["channels"] == "RGB"
    info = json.loads((ds.directory / "info.json").read_text())
    assert info["input_shape"] == [3, 12, 12]


@pytest.mark.parametrize("filename", ["big.zip", "big.jsonl", "big.txt", "big.csv"])
def test_oversize_uploads_of_every_kind_are_stopped_while_streaming(client_alice, settings, sent_tasks, filename):
    settings.MAX_UPLOAD_BYTES = 4096
    body = (b"PK\x03\x04" + bytes(10_000)) if filename.endswith(".zip") else b"text,label\n" + b"words here,a\n" * 1000
    r = client_alice.post("/datasets/", {"file": SimpleUploadedFile(filename, body)})
    assert r.status_code == 400 and "upload limit" in r.content.decode()
    assert Dataset.objects.count() == 0 and sent_tasks == [] and files_left() == []
    # The chunked path refuses the declared size before a byte is sent.
    r = client_alice.post("/api/uploads/", {"filename": filename, "size": len(body)}, content_type="application/json")
    assert r.status_code == 400 and "upload limit" in r.json()["error"]
    assert files_left() == []
