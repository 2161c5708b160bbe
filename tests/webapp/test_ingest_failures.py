"""A failed ingest leaves no dataset row and no files; its owner (only) still learns why, on the
datasets page and from the API, until they dismiss the notice."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from webapp.datasets import services
from webapp.datasets.models import Dataset, IngestFailure
from workers.adapters.tasks import ingest_dataset

pytestmark = pytest.mark.django_db

RAGGED = b"a,b,label\n1,2,x\n3,4\n"


def client_for(user, **kw) -> Client:
    c = Client(**kw)
    c.force_login(user)
    return c


def files_left() -> list[str]:
    root = Path(settings.DATA_DIR)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def failed_upload(client, content=RAGGED, filename="bad.csv", **fields) -> str:
    r = client.post("/datasets/", {"file": SimpleUploadedFile(filename, content), "name": "my table", **fields})
    assert r.status_code == 302, r.content.decode()[:1000]
    pk = str(Dataset.objects.latest("created_at").pk)
    assert ingest_dataset(pk) == "failed"
    return pk


def test_the_notice_on_the_list_page_and_the_api(alice, sent_tasks):
    c = client_for(alice)
    pk = failed_upload(c)
    assert not Dataset.objects.exists() and files_left() == []
    html = c.get("/datasets/").content.decode()
    assert "my table" in html and "bad.csv: line 3: 2 fields, but the header has 3" in html
    assert f'action="/datasets/failures/{pk}/dismiss/"' in html
    assert "No datasets yet." in html  # the failure is not a dataset
    body = c.get("/api/datasets/").json()
    assert body["datasets"] == []
    assert [(f["id"], f["status"], f["name"], f["original_filename"], f["kind"]) for f in body["failures"]] == [
        (pk, "failed", "my table", "bad.csv", "tabular")]
    r = c.get(f"/api/datasets/{pk}/")
    assert r.status_code == 404 and r.json()["id"] == pk and "line 3" in r.json()["error"]
    assert Dataset.objects.count() == 0 and files_left() == []


def test_only_the_owner_sees_or_dismisses_it(alice, bob, staff, sent_tasks):
    pk = failed_upload(client_for(alice))
    for user in (bob, staff):  # staff too: the notice is a message to the uploader
        other = client_for(user)
        r = other.get(f"/api/datasets/{pk}/")
        assert r.status_code == 404 and "line 3" not in r.content.decode()
        assert other.get(f"/datasets/{pk}/").status_code == 404
        assert "line 3" not in other.get("/datasets/").content.decode()
        assert other.get("/api/datasets/").json()["failures"] == []
        assert other.post(f"/datasets/failures/{pk}/dismiss/").status_code == 404
        assert other.delete(f"/api/datasets/{pk}/").status_code == 404
    assert IngestFailure.objects.filter(pk=pk).exists()


def test_dismiss_needs_post_and_csrf(alice, sent_tasks):
    pk = failed_upload(client_for(alice))
    strict = client_for(alice, enforce_csrf_checks=True)
    assert strict.post(f"/datasets/failures/{pk}/dismiss/").status_code == 403
    assert strict.get(f"/datasets/failures/{pk}/dismiss/").status_code == 405
    assert IngestFailure.objects.filter(pk=pk).exists()
    r = client_for(alice).post(f"/datasets/failures/{pk}/dismiss/")
    assert r.status_code == 302 and r["Location"] == "/datasets/"
    assert not IngestFailure.objects.exists()


def test_the_api_dismisses_it_with_delete(alice, sent_tasks):
    c = client_for(alice)
    pk = failed_upload(c)
    assert c.delete(f"/api/datasets/{pk}/").status_code == 204
    assert not IngestFailure.objects.exists()
    r = c.get(f"/api/datasets/{pk}/")
    assert r.status_code == 404 and "failed" not in r.content.decode()


def test_a_lowered_cap_through_the_whole_path(alice, sent_tasks, monkeypatch):
    from workers.datasets import tabular

    monkeypatch.setattr(tabular, "MAX_ROWS", 3)
    c = client_for(alice)
    pk = failed_upload(c, b"x,label\n1,a\n2,b\n3,a\n4,b\n", filename="long.csv")
    assert c.get(f"/api/datasets/{pk}/").json()["error"] == "long.csv: line 5: row 4 is past the limit of 3 rows"
    assert Dataset.objects.count() == 0 and files_left() == []


def test_an_internal_error_also_leaves_nothing_but_the_reason(alice, sent_tasks, monkeypatch):
    def broken(kind, source, out_dir, options, progress, max_cache_bytes=None, processes=None):
        (Path(str(out_dir) + ".partial")).mkdir(parents=True)
        (Path(str(out_dir) + ".partial") / "half.npy").write_bytes(b"x")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("workers.datasets.ingest", broken)
    c = client_for(alice)
    c.post("/datasets/", {"file": SimpleUploadedFile("d.csv", b"a,label\n1,x\n2,y\n")})
    pk = str(Dataset.objects.get().pk)
    with pytest.raises(RuntimeError):
        ingest_dataset(pk)
    assert Dataset.objects.count() == 0 and files_left() == []
    assert "internal error while reading the file (disk on fire)" in IngestFailure.objects.get(pk=pk).error


def test_a_dataset_deleted_while_ingesting_leaves_no_notice(alice, sent_tasks, monkeypatch):
    c = client_for(alice)
    c.post("/datasets/", {"file": SimpleUploadedFile("d.csv", RAGGED)})
    ds = Dataset.objects.get()

    def deleted_meanwhile(kind, source, out_dir, options, progress, max_cache_bytes=None, processes=None):
        services.delete_dataset(Dataset.objects.get(pk=ds.pk))
        Path(str(out_dir) + ".partial").mkdir(parents=True)
        raise services.DatasetError("too late")  # any failure

    monkeypatch.setattr("workers.datasets.ingest", deleted_meanwhile)
    with pytest.raises(services.DatasetError):
        ingest_dataset(str(ds.pk))
    assert not IngestFailure.objects.exists() and files_left() == []


def test_old_notices_are_trimmed(alice, sent_tasks, monkeypatch):
    monkeypatch.setattr(services, "FAILURES_KEPT", 2)
    c = client_for(alice)
    pks = [failed_upload(c, name=f"try {i}") for i in range(3)]
    assert sorted(str(p) for p in IngestFailure.objects.values_list("pk", flat=True)) == sorted(pks[1:])


@pytest.mark.django_db(transaction=True)  # on_commit runs as in production: inside the upload request
def test_broker_down_at_upload_time(alice, monkeypatch):
    def down(*args, queue=None):
        raise ConnectionError("Connection refused")

    monkeypatch.setattr("webapp.celery.send", down)
    c = client_for(alice)
    r = c.post("/datasets/", {"file": SimpleUploadedFile("d.csv", b"a,label\n1,x\n2,y\n")}, follow=True)
    assert r.redirect_chain == [("/datasets/", 302)]
    html = r.content.decode()
    assert "could not be reached: Connection refused" in html and "checking it now" not in html
    r = c.post("/api/datasets/", {"file": SimpleUploadedFile("e.csv", b"a,label\n1,x\n2,y\n")})
    assert r.status_code == 503 and r.json()["status"] == "failed" and "could not be reached" in r.json()["error"]
    assert Dataset.objects.count() == 0 and IngestFailure.objects.count() == 2 and files_left() == []
