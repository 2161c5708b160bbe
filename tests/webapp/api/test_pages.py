"""The REST API: job validation, the schema, chunked uploads. (Split from tests/webapp/test_pages.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from webapp.celery import INGEST_TASK
from webapp.datasets.models import Dataset, UploadSession
from webapp.jobs.models import Job
from tests.webapp.factories import ready_dataset

pytestmark = pytest.mark.django_db


def test_api_job_validation_errors(alice, sent_tasks):
    ds = ready_dataset(alice)
    c = Client()
    c.force_login(alice)
    r = c.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "nope"}, content_type="application/json")
    assert r.status_code == 400 and "unknown architecture" in r.json()["errors"]["architecture"]
    r = c.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp", "train_config": {"epoch": 3}},
               content_type="application/json")
    assert r.json()["errors"] == {"train_config.epoch": "unknown setting"}
    assert Job.objects.count() == 0 and sent_tasks == []


def test_openapi_schema_is_served():
    r = Client().get("/api/schema/")
    assert r.status_code == 200
    body = r.content.decode()
    assert "/api/jobs/" in body and "/api/datasets/" in body and "openapi" in body


def _put(client, session_id, data: bytes, start: int, total: int):
    return client.put(f"/api/uploads/{session_id}/", data, content_type="application/octet-stream",
                      headers={"Content-Range": f"bytes {start}-{start + len(data) - 1}/{total}"})


def test_chunked_upload_resumes_and_becomes_a_dataset(alice, settings, sent_tasks, django_capture_on_commit_callbacks):
    settings.UPLOAD_CHUNK_BYTES = 10
    c = Client()
    c.force_login(alice)
    content = b"a,b,label\n1,2,x\n3,4,y\n5,6,x\n"
    r = c.post("/api/uploads/", {"filename": "../../evil/d.csv", "size": len(content)},
               content_type="application/json")
    assert r.status_code == 201
    sid = r.json()["id"]
    assert _put(c, sid, content[:10], 0, len(content)).json()["received"] == 10
    assert _put(c, sid, content[:10], 0, len(content)).status_code == 200  # a retried chunk is harmless
    r = _put(c, sid, content[20:], 20, len(content))
    assert r.status_code == 409 and r.json()["received"] == 10  # out of order: says where to go on
    assert _put(c, sid, content[10:21], 10, len(content)).status_code == 413  # bigger than a chunk
    assert _put(c, sid, content[10:20], 10, len(content)).status_code == 200
    r = c.post("/api/datasets/", {"upload": sid, "name": "early"}, content_type="application/json")
    assert r.status_code == 400 and "incomplete" in r.json()["error"]
    assert _put(c, sid, content[20:], 20, len(content)).json()["received"] == len(content)
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post("/api/datasets/", {"upload": sid, "name": "chunked"}, content_type="application/json")
    assert r.status_code == 201, r.content
    ds = Dataset.objects.get(name="chunked")
    assert ds.original_filename == "d.csv" and ds.upload_path.read_bytes() == content
    assert sent_tasks == [(INGEST_TASK, str(ds.pk))]
    assert c.get(f"/api/uploads/{sid}/").status_code == 404  # consumed
    assert not list((Path(settings.DATA_DIR) / "uploads" / "sessions").iterdir())


def test_chunked_upload_limits_and_other_users(alice, bob, settings):
    settings.MAX_UPLOAD_BYTES = 100
    c, other = Client(), Client()
    c.force_login(alice)
    other.force_login(bob)
    r = c.post("/api/uploads/", {"filename": "big.zip", "size": 101}, content_type="application/json")
    assert r.status_code == 400 and "upload limit" in r.json()["error"]
    sid = c.post("/api/uploads/", {"filename": "d.csv", "size": 10}, content_type="application/json").json()["id"]
    assert _put(other, sid, b"0123456789", 0, 10).status_code == 404
    assert other.post("/api/datasets/", {"upload": sid}, content_type="application/json").status_code == 404
    assert c.put(f"/api/uploads/{sid}/", b"x", content_type="application/octet-stream").status_code == 400
    assert c.delete(f"/api/uploads/{sid}/").status_code == 204
    assert not list((Path(settings.DATA_DIR) / "uploads" / "sessions").iterdir())


def test_single_request_limit_points_to_chunked_uploads(client_alice, settings):
    settings.MAX_REQUEST_BYTES = 1024
    r = client_alice.post("/api/datasets/", {"file": SimpleUploadedFile("big.csv", b"a,b\n" + b"1,2\n" * 2000)})
    assert r.status_code == 413 and "/api/uploads/" in r.json()["error"]


def test_api_chunked_upload_with_bad_content_is_aborted(alice, settings, sent_tasks):
    settings.UPLOAD_CHUNK_BYTES = 16
    c = Client()
    c.force_login(alice)
    content = b"this is not a zip archive at all"
    sid = c.post("/api/uploads/", {"filename": "pics.zip", "size": len(content)},
                 content_type="application/json").json()["id"]
    for start in range(0, len(content), 16):
        assert _put(c, sid, content[start:start + 16], start, len(content)).status_code == 200
    sessions = Path(settings.DATA_DIR) / "uploads" / "sessions"
    assert [p.name for p in sessions.iterdir()] == [f"{sid}.part"]
    r = c.post("/api/datasets/", {"upload": sid, "name": "pics"}, content_type="application/json")
    assert r.status_code == 400 and "not a ZIP archive" in r.json()["error"]
    # The rejected upload is gone: no .part file, no session row holding quota.
    assert list(sessions.iterdir()) == [] and not UploadSession.objects.exists()
    assert c.get(f"/api/uploads/{sid}/").status_code == 404
    assert Dataset.objects.count() == 0 and sent_tasks == []


def test_api_chunked_upload_over_quota_is_aborted(alice, settings, sent_tasks):
    settings.TRAINYARD_USER_QUOTA_MB = 1
    c = Client()
    c.force_login(alice)
    content = b"a,label\n1,x\n2,y\n"
    sid = c.post("/api/uploads/", {"filename": "d.csv", "size": len(content)},
                 content_type="application/json").json()["id"]
    assert _put(c, sid, content, 0, len(content)).status_code == 200
    ready = ready_dataset(alice)  # meanwhile the quota filled up
    Dataset.objects.filter(pk=ready.pk).update(size_bytes=1024 * 1024)
    r = c.post("/api/datasets/", {"upload": sid}, content_type="application/json")
    assert r.status_code == 400 and "quota" in r.json()["error"]
    assert not UploadSession.objects.exists()
    assert list((Path(settings.DATA_DIR) / "uploads" / "sessions").iterdir()) == []
