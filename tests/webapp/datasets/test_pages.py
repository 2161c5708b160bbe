"""The datasets pages: uploads and their checks, the dataset page, editing and deleting.

Split from tests/webapp/test_pages.py so the tests mirror the packages."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from webapp.celery import INGEST_TASK
from webapp.datasets.models import Dataset
from tests.webapp.factories import ready_dataset, running_job
from tests.webapp.leftovers import leftover_uploads

pytestmark = pytest.mark.django_db


def test_upload_csv_queues_ingest(client_alice, alice, sent_tasks, django_capture_on_commit_callbacks):
    data = b"a,b,label\n1,2,x\n3,4,y\n5,6,x\n"
    with django_capture_on_commit_callbacks(execute=True):
        r = client_alice.post("/datasets/", {"file": SimpleUploadedFile("d.csv", data), "name": "mine"})
    assert r.status_code == 302
    ds = Dataset.objects.get(owner=alice)
    assert ds.name == "mine" and ds.status == "ingesting" and ds.size_bytes == len(data)
    assert sent_tasks == [(INGEST_TASK, str(ds.pk))]
    assert ds.upload_path.read_bytes() == data


@pytest.mark.parametrize("filename,content,message", [
    ("d.exe", b"a,b\n1,2\n", "unsupported file type .exe"),
    ("d.csv", b"", "the file is empty"),
    ("d.csv", b"PK\x03\x04rest-of-zip", "ZIP archive"),
    ("d.csv", b"a,b\n\x00\x01\x02", "NUL bytes"),
    ("d.csv", b"a,b,label\n1,2,\xff\xfe\n", "not valid UTF-8"),
])
def test_bad_uploads_are_rejected_with_a_message_and_leave_nothing(client_alice, sent_tasks, filename, content,
                                                                    message):
    r = client_alice.post("/datasets/", {"file": SimpleUploadedFile(filename, content)})
    assert r.status_code == 400
    assert message in r.content.decode()
    assert Dataset.objects.count() == 0 and sent_tasks == []
    assert leftover_uploads() == []


def test_oversize_upload_is_stopped_while_streaming(client_alice, settings, sent_tasks):
    settings.MAX_UPLOAD_BYTES = 1024
    r = client_alice.post("/datasets/", {"file": SimpleUploadedFile("big.csv", b"a,b\n" + b"1,2\n" * 2000)})
    assert r.status_code == 400 and "upload limit" in r.content.decode()
    assert Dataset.objects.count() == 0 and leftover_uploads() == []
    api = Client()
    api.force_login(Dataset._meta.apps.get_model("auth", "User").objects.get(username="alice"))
    r = api.post("/api/datasets/", {"file": SimpleUploadedFile("big.csv", b"a,b\n" + b"1,2\n" * 2000)})
    assert r.status_code == 413 and "upload limit" in r.json()["error"]
    assert leftover_uploads() == []


def test_dataset_page_shows_counts(client_alice, alice):
    ds = ready_dataset(alice)
    html = client_alice.get(f"/datasets/{ds.pk}/").content.decode()
    assert 'id="stat-rows">10<' in html and 'id="stat-classes">2<' in html and 'id="stat-columns">3<' in html


def test_delete_dataset_removes_files(client_alice, alice):
    ds = ready_dataset(alice)
    directory = ds.directory
    assert directory.exists()
    assert client_alice.post(f"/datasets/{ds.pk}/delete/").status_code == 302
    assert not Dataset.objects.exists() and not directory.exists()


def test_quota_is_enforced_and_shown(client_alice, alice, settings, sent_tasks):
    settings.TRAINYARD_USER_QUOTA_MB = 1
    ready = ready_dataset(alice)
    Dataset.objects.filter(pk=ready.pk).update(size_bytes=1024 * 1024 - 10)
    r = client_alice.post("/datasets/", {"file": SimpleUploadedFile("d.csv", b"a,label\n1,x\n2,y\n")})
    assert r.status_code == 400 and "exceed your storage quota" in r.content.decode()
    assert Dataset.objects.count() == 1 and sent_tasks == [] and leftover_uploads() == []
    assert "Storage: 1024.0\xa0KB of 1.0\xa0MB used" in client_alice.get("/datasets/").content.decode()


@pytest.mark.parametrize("filename,content,kind", [
    ("a.csv", b"x,y,label\n1,2,a\n", "tabular"),
    ("a.csv", b"text,label\nhello,pos\n", "text"),
    ("a.jsonl", b'{"text": "hi", "label": "a"}\n', "text"),
    ("a.txt", b"Once upon a time\nthere was a corpus.\n", "corpus"),
    ("a.zip", b"PK\x03\x04....", "image"),
])
def test_kind_is_detected_from_the_file(client_alice, alice, sent_tasks, filename, content, kind):
    assert client_alice.post("/datasets/", {"file": SimpleUploadedFile(filename, content)}).status_code == 302
    assert Dataset.objects.get().kind == kind


def test_kind_override_and_content_mismatch(client_alice, alice, sent_tasks):
    r = client_alice.post("/datasets/", {"file": SimpleUploadedFile("s.csv", b"t0,t1,label\n1,2,a\n"),
                                         "kind": "sequence", "task": "classification"})
    assert r.status_code == 302
    ds = Dataset.objects.get()
    assert ds.kind == "sequence" and ds.options["task"] == "classification"
    r = client_alice.post("/datasets/", {"file": SimpleUploadedFile("pics.zip", b"not a zip at all")})
    assert r.status_code == 400 and "not a ZIP archive" in r.content.decode()
    r = client_alice.post("/datasets/", {"file": SimpleUploadedFile("d.csv", b"a\n1\n"), "kind": "image"})
    assert r.status_code == 400 and "unsupported file type .csv" in r.content.decode()
    r = client_alice.post("/datasets/", {"file": SimpleUploadedFile("i.zip", b"PK\x03\x04"), "image_size": "4"})
    assert r.status_code == 400 and "between 8 and 512" in r.content.decode()
    assert Dataset.objects.count() == 1


def test_rename_and_describe(client_alice, alice):
    ds = ready_dataset(alice)
    client_alice.post(f"/datasets/{ds.pk}/edit/", {"name": "  Renamed  ", "description": "about it"})
    ds.refresh_from_db()
    assert ds.name == "Renamed" and ds.description == "about it"
    client_alice.post(f"/datasets/{ds.pk}/edit/", {"name": "  "})
    ds.refresh_from_db()
    assert ds.name == "Renamed"


def test_dataset_in_use_cannot_be_deleted(client_alice, alice):
    job = running_job(alice)
    ds = job.dataset
    client_alice.post(f"/datasets/{ds.pk}/delete/")
    assert Dataset.objects.filter(pk=ds.pk).exists() and ds.directory.exists()


def test_preview_serves_only_listed_files(client_alice, alice):
    ds = ready_dataset(alice)
    (ds.directory / "previews").mkdir()
    (ds.directory / "previews" / "0_0.png").write_bytes(b"\x89PNG fake")
    (ds.directory / "previews" / "secret.png").write_bytes(b"\x89PNG other")
    Dataset.objects.filter(pk=ds.pk).update(info={**ds.info, "previews": {"a": ["0_0.png"]}})
    r = client_alice.get(f"/datasets/{ds.pk}/previews/0_0.png")
    assert r.status_code == 200 and r["Content-Type"] == "image/png" and r["X-Content-Type-Options"] == "nosniff"
    assert client_alice.get(f"/datasets/{ds.pk}/previews/secret.png").status_code == 404
    assert client_alice.get(f"/datasets/{ds.pk}/previews/..%2Finfo.json").status_code == 404


XSS = "<img src=x onerror=alert(1)>"


XSS_ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def _png_zip(path: Path, folders: dict[str, int]) -> Path:
    import io
    import zipfile

    from PIL import Image

    with zipfile.ZipFile(path, "w") as zf:
        for i, (folder, shade) in enumerate(folders.items()):
            for k in range(5):
                buf = io.BytesIO()
                Image.new("L", (8, 8), shade + k).save(buf, "PNG")
                zf.writestr(f"{folder}/{k}.png", buf.getvalue())
    return path


def test_dataset_and_class_names_are_escaped(client_alice, alice, sent_tasks, tmp_path):
    from workers.adapters.tasks import ingest_dataset

    zip_path = _png_zip(tmp_path / "x.zip", {XSS: 20, "plain": 200})
    r = client_alice.post("/datasets/", {"file": SimpleUploadedFile("x.zip", zip_path.read_bytes()), "name": XSS})
    assert r.status_code == 302
    ds = Dataset.objects.get()
    assert ingest_dataset(str(ds.pk)) == "ready"
    ds.refresh_from_db()
    assert XSS in ds.info["classes"]  # the class keeps its name; only the page escapes it
    for url in (f"/datasets/{ds.pk}/", "/datasets/", "/jobs/new/"):
        html = client_alice.get(url).content.decode()
        assert "<img src=x" not in html and "onerror=alert(1)>" not in html, url
        assert XSS_ESCAPED in html, url
    html = client_alice.get(f"/datasets/{ds.pk}/").content.decode()
    assert f"<h1>{XSS_ESCAPED} " in html  # the dataset name
    assert f'<span class="bar-label">{XSS_ESCAPED}</span>' in html  # the class balance
    assert f"<strong>{XSS_ESCAPED}</strong>" in html  # the preview row
    assert f'alt="{XSS_ESCAPED} example"' in html


def test_dataset_page_shows_the_schema_and_the_split(client_alice, alice, sent_tasks, tmp_path):
    from workers.adapters.tasks import ingest_dataset

    rows = "".join(f"{i},{i * 2 % 7},{'ab'[i % 2]}\n" for i in range(20))
    client_alice.post("/datasets/", {"file": SimpleUploadedFile("t.csv", f"height,width,kind\n{rows}".encode()),
                                     "label_column": "kind", "val_fraction": "0.25"})
    ds = Dataset.objects.get()
    assert ingest_dataset(str(ds.pk)) == "ready"
    html = client_alice.get(f"/datasets/{ds.pk}/").content.decode()
    assert "<h2>Schema</h2>" in html
    assert "<tr><th>Task</th><td>classification</td></tr>" in html
    assert "<tr><th>Input shape</th><td>[2]</td></tr>" in html
    assert "<tr><th>Label column</th><td><code>kind</code></td></tr>" in html
    assert "<tr><th>Features</th><td>height, width</td></tr>" in html
    assert ('<tr><th>Split</th><td id="split-source">seeded random split, stratified by class (0.25 validation, '
            'seed 0) — 15 train, 5 validation, no test split</td></tr>' in html)
    assert '<span class="big">15</span> train / <span class="big">5</span> validation' in html

    # An archive with its own train/ and val/ folders keeps that split, and says so.
    zip_path = _png_zip(tmp_path / "s.zip", {"train/dark": 20, "train/light": 200, "val/dark": 30, "val/light": 210})
    client_alice.post("/datasets/", {"file": SimpleUploadedFile("s.zip", zip_path.read_bytes())})
    img = Dataset.objects.get(kind="image")
    assert ingest_dataset(str(img.pk)) == "ready"
    html = client_alice.get(f"/datasets/{img.pk}/").content.decode()
    assert ('<tr><th>Split</th><td id="split-source">provided: the archive\'s own train/, val/ folders — 10 train, '
            '10 validation, no test split</td></tr>' in html)
    assert "<tr><th>Input shape</th><td>[1, 8, 8]</td></tr>" in html
    assert "8×8 px, grayscale" in html
    assert '<span class="big">10</span> train / <span class="big">10</span> validation' in html
