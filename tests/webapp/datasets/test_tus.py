"""tus 1.0 (core, creation, termination) on the upload sessions: protocol answers, bad input,
another user's upload, and the dataset a finished upload becomes."""

from __future__ import annotations

import base64
import hashlib

import pytest
from rest_framework.test import APIClient

from tests.webapp.tokens import api_key
from webapp.celery import INGEST_TASK
from webapp.datasets.models import Dataset, UploadSession
from webapp.datasets.tus import format_metadata, parse_metadata

URL = "/api/uploads/tus/"
CSV = b"x1,x2,label\n" + b"".join(b"%d,%d,%s\n" % (i, i % 7, b"ab"[i % 2:i % 2 + 1]) for i in range(300))


def meta(**values) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def api(user) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {api_key(user)}", HTTP_TUS_RESUMABLE="1.0.0")
    return c


def create(c, size, **values):
    return c.post(URL, HTTP_UPLOAD_LENGTH=str(size), HTTP_UPLOAD_METADATA=meta(**values))


def patch(c, location, offset, body):
    return c.generic("PATCH", location, body, content_type="application/offset+octet-stream",
                     HTTP_UPLOAD_OFFSET=str(offset))


def test_options_advertises_version_extensions_and_max_size(client, settings):
    r = client.options(URL)
    assert r.status_code == 204
    assert r["Tus-Version"] == "1.0.0" and r["Tus-Resumable"] == "1.0.0"
    assert set(r["Tus-Extension"].split(",")) == {"creation", "termination"}
    assert int(r["Tus-Max-Size"]) == settings.MAX_UPLOAD_BYTES


def test_create_head_patch_resume_and_dataset(db, alice, sent_tasks, django_capture_on_commit_callbacks):
    c = api(alice)
    r = create(c, len(CSV), filename="points.csv", name="Points", kind="tabular", label_column="label")
    assert r.status_code == 201, r.content
    location = r["Location"]
    assert location.startswith("http://testserver/api/uploads/tus/")
    head = c.head(location)
    assert head.status_code == 200 and head["Upload-Offset"] == "0" and head["Upload-Length"] == str(len(CSV))
    assert parse_metadata(head["Upload-Metadata"])["filename"] == "points.csv"
    r = patch(c, location, 0, CSV[:1000])
    assert r.status_code == 204 and r["Upload-Offset"] == "1000"
    # a resumed client asks where to go on; a stale offset is refused with the right one
    assert c.head(location)["Upload-Offset"] == "1000"
    r = patch(c, location, 0, CSV[:1000])
    assert r.status_code == 409 and r["Upload-Offset"] == "1000"
    r = patch(c, location, 1000, CSV[1000:])
    assert r.status_code == 204 and r["Upload-Offset"] == str(len(CSV))
    session_id = location.rstrip("/").rsplit("/", 1)[1]
    # not asked to create the dataset: the session waits for POST /api/datasets/ upload=<id>
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post("/api/datasets/", {"upload": session_id, "name": "Points"}, format="json")
    assert r.status_code == 201, r.content
    ds = Dataset.objects.get(pk=r.json()["id"])
    assert hashlib.sha256(ds.upload_path.read_bytes()).hexdigest() == hashlib.sha256(CSV).hexdigest()
    assert ds.kind == "tabular" and sent_tasks == [(INGEST_TASK, str(ds.pk))]
    assert not UploadSession.objects.exists()


def test_create_dataset_from_metadata_when_complete(db, alice, sent_tasks, django_capture_on_commit_callbacks):
    c = api(alice)
    location = create(c, len(CSV), filename="p.csv", name="From tus", kind="tabular", val_fraction="0.25",
                      create_dataset="1")["Location"]
    with django_capture_on_commit_callbacks(execute=True):
        r = patch(c, location, 0, CSV)
    assert r.status_code == 204, r.content
    ds = Dataset.objects.get(pk=r["Trainyard-Dataset"])
    assert (ds.name, ds.owner, ds.options["val_fraction"]) == ("From tus", alice, 0.25)
    assert ds.upload_path.read_bytes() == CSV and sent_tasks == [(INGEST_TASK, str(ds.pk))]
    assert c.head(location).status_code == 404


def test_refused_file_at_completion_leaves_nothing(db, alice, sent_tasks, data_dir):
    c = api(alice)
    body = b"\x00\x01 not a table"
    location = create(c, len(body), filename="x.csv", kind="tabular", create_dataset="1")["Location"]
    r = patch(c, location, 0, body)
    assert r.status_code == 400 and "removed" in r.json()["error"]
    assert not Dataset.objects.exists() and not UploadSession.objects.exists() and sent_tasks == []
    assert not list((data_dir / "uploads").rglob("*.part"))


@pytest.mark.parametrize("headers, status, words", [
    ({}, 400, "Upload-Length"),
    ({"HTTP_UPLOAD_LENGTH": "-3"}, 400, "Upload-Length"),
    ({"HTTP_UPLOAD_LENGTH": "10"}, 400, "filename"),
    ({"HTTP_UPLOAD_LENGTH": "10", "HTTP_UPLOAD_METADATA": "filename !!notbase64"}, 400, "base64"),
    ({"HTTP_UPLOAD_LENGTH": "10", "HTTP_UPLOAD_METADATA": "filename YQ==,filename YQ=="}, 400, "unique"),
    ({"HTTP_UPLOAD_LENGTH": "0", "HTTP_UPLOAD_METADATA": "filename YQ=="}, 400, "empty"),
    ({"HTTP_UPLOAD_LENGTH": str(10**15), "HTTP_UPLOAD_METADATA": "filename YQ=="}, 413, "limit"),
    ({"HTTP_UPLOAD_DEFER_LENGTH": "1"}, 400, "Defer"),
])
def test_bad_creation_is_refused_with_a_message(db, alice, headers, status, words):
    r = api(alice).post(URL, **headers)
    assert r.status_code == status and words in r.json()["error"], r.content
    assert not UploadSession.objects.exists()


def test_quota_is_checked_at_creation(db, alice, settings):
    settings.TRAINYARD_USER_QUOTA_MB = 1
    r = create(api(alice), 2 * 2**20, filename="big.csv")
    assert r.status_code == 400 and "quota" in r.json()["error"]
    assert not UploadSession.objects.exists()


def test_bad_patches_change_nothing(db, alice):
    c = api(alice)
    location = create(c, 100, filename="a.csv")["Location"]
    r = c.generic("PATCH", location, b"abc", content_type="application/octet-stream", HTTP_UPLOAD_OFFSET="0")
    assert r.status_code == 415
    assert c.generic("PATCH", location, b"abc", content_type="application/offset+octet-stream").status_code == 400
    r = patch(c, location, 0, b"x" * 101)
    assert r.status_code == 400 and "past Upload-Length" in r.json()["error"]
    assert c.head(location)["Upload-Offset"] == "0"


def test_patch_over_the_request_limit_is_413(db, alice, settings):
    settings.MAX_REQUEST_BYTES = 1000
    c = api(alice)
    location = create(c, 5000, filename="a.csv")["Location"]
    r = patch(c, location, 0, b"x" * 1001)
    assert r.status_code == 413 and "per PATCH" in r.json()["error"]


def test_one_patch_is_stored_in_committed_pieces(db, alice, settings):
    settings.UPLOAD_CHUNK_BYTES = 64
    c = api(alice)
    location = create(c, 1000, filename="a.bin")["Location"]
    data = bytes(range(256)) * 4
    assert patch(c, location, 0, data[:1000])["Upload-Offset"] == "1000"
    assert UploadSession.objects.get().path.read_bytes() == data[:1000]


def test_another_tus_version_is_412(db, alice):
    key = api_key(alice)
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {key}", HTTP_TUS_RESUMABLE="0.2.2")
    r = c.post(URL, HTTP_UPLOAD_LENGTH="10", HTTP_UPLOAD_METADATA=meta(filename="a"))
    assert r.status_code == 412 and r["Tus-Version"] == "1.0.0"
    assert not UploadSession.objects.exists()


def test_termination_removes_the_file(db, alice, data_dir):
    c = api(alice)
    location = create(c, 100, filename="a.csv")["Location"]
    patch(c, location, 0, b"x" * 10)
    path = UploadSession.objects.get().path
    assert c.delete(location).status_code == 204
    assert not path.exists() and not UploadSession.objects.exists()
    assert c.head(location).status_code == 404


def test_other_users_and_anonymous_get_nothing(db, alice, bob):
    location = create(api(alice), 100, filename="a.csv")["Location"]
    other = api(bob)
    assert other.head(location).status_code == 404
    assert patch(other, location, 0, b"x").status_code == 404
    assert other.delete(location).status_code == 404
    anonymous = APIClient()
    anonymous.credentials(HTTP_TUS_RESUMABLE="1.0.0")
    assert anonymous.head(location).status_code in (401, 403)
    assert anonymous.post(URL, HTTP_UPLOAD_LENGTH="10", HTTP_UPLOAD_METADATA=meta(filename="a")).status_code in (401, 403)
    assert UploadSession.objects.get().received == 0


def test_session_auth_needs_the_csrf_token(db, alice):
    c = APIClient(enforce_csrf_checks=True)
    c.force_login(alice)
    r = c.post(URL, HTTP_UPLOAD_LENGTH="10", HTTP_UPLOAD_METADATA=meta(filename="a"), HTTP_TUS_RESUMABLE="1.0.0")
    assert r.status_code == 403 and not UploadSession.objects.exists()


def test_metadata_round_trip():
    values = {"filename": "réseau,1.csv", "empty": "", "kind": "text"}
    assert parse_metadata(format_metadata(values)) == values
