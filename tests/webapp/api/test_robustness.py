"""The API refuses bad input with a clear JSON message and changes nothing; ids that are not
UUIDs, unknown URLs and refusals all answer JSON; a token alone can do what the pages do."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests import hfmodels
from tests.webapp.api.test_schema_conformance import api_token
from tests.webapp.factories import finished_job, ready_dataset
from webapp.celery import INGEST_TASK, MODELZIP_TASK
from webapp.datasets import services as dataset_services
from webapp.datasets.models import Dataset, IngestFailure, UploadSession
from webapp.hub.models import LocalModel
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


def token_client(user) -> Client:
    """A client with an API token only: no session, and CSRF enforced as for a browser."""
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Token {api_token(user)}")


def _state() -> tuple:
    ds = [(d.pk, d.name, d.description, sorted(d.shared_with.values_list("pk", flat=True)))
          for d in Dataset.objects.all()]
    return (ds, Job.objects.count(), UploadSession.objects.count(), LocalModel.objects.count())


# Every operation that reads a JSON body: (method, path template) with {ds} and {job} filled in.
BODY_OPERATIONS = [
    ("post", "/api/uploads/"),
    ("post", "/api/datasets/"),
    ("patch", "/api/datasets/{ds}/"),
    ("post", "/api/datasets/{ds}/share/"),
    ("post", "/api/jobs/"),
    ("post", "/api/models/"),
    ("post", "/api/jobs/{job}/predictions/"),
]


@pytest.mark.parametrize("raw", ["[1, 2]", '"a string"', "42", "null", "true"])
@pytest.mark.parametrize("method,path", BODY_OPERATIONS)
def test_a_json_body_that_is_not_an_object_is_a_clear_400_and_changes_nothing(alice, sent_tasks, method, path,
                                                                              raw):
    ds = ready_dataset(alice)
    job = finished_job(alice, ds)
    c = token_client(alice)
    before = _state()
    r = getattr(c, method)(path.format(ds=ds.pk, job=job.pk), raw, content_type="application/json")
    assert r.status_code == 400, r.content
    assert r["Content-Type"] == "application/json"
    assert "must be a JSON object" in r.json()["detail"]
    assert _state() == before and sent_tasks == []


def test_malformed_json_is_a_400_too(alice):
    r = token_client(alice).post("/api/jobs/", "{not json", content_type="application/json")
    assert r.status_code == 400 and "JSON parse error" in r.json()["detail"]


def test_a_form_body_with_too_many_fields_is_a_json_400_and_changes_nothing(alice):
    from urllib.parse import urlencode

    job = finished_job(alice, ready_dataset(alice))
    body = urlencode([("action", "archive")] + [("ids", str(job.pk))] * 1500)
    r = token_client(alice).post("/api/jobs/bulk/", body, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400 and r["Content-Type"] == "application/json"
    assert "fields" in r.json()["detail"]  # names the limit (DATA_UPLOAD_MAX_NUMBER_FIELDS)
    job.refresh_from_db()
    assert job.archived_at is None


@pytest.mark.parametrize("path", ["/api/jobs/not-a-uuid/", "/api/datasets/123/", "/api/jobs/1/events/",
                                  "/api/uploads/x/", "/api/nothing-here/", "/api/"])
def test_an_id_that_is_not_a_uuid_or_an_unknown_url_is_a_json_404(alice, path):
    r = token_client(alice).get(path)
    assert r.status_code == 404
    assert r["Content-Type"] == "application/json" and "not found" in r.json()["detail"]


def test_a_404_outside_the_api_stays_a_page(alice):
    c = Client()
    c.force_login(alice)
    r = c.get("/jobs/not-a-uuid/")
    assert r.status_code == 404 and r["Content-Type"].startswith("text/html")


def test_an_unknown_or_foreign_object_is_a_json_404_in_the_error_shape(alice, bob):
    job = finished_job(bob)
    r = token_client(alice).get(f"/api/jobs/{job.pk}/")
    assert r.status_code == 404 and set(r.json()) == {"detail"}


def test_refusals_by_drf_have_the_same_shape():
    r = Client().get("/api/jobs/")
    assert r.status_code in (401, 403)
    assert set(r.json()) == {"detail"} and r.json()["detail"]


@pytest.mark.parametrize("size", [1.5, "1.5", True, 0, -3, "ten", None])
def test_an_upload_size_that_is_not_a_positive_whole_number_is_refused_not_truncated(alice, size):
    r = token_client(alice).post("/api/uploads/", {"filename": "d.csv", "size": size},
                                 content_type="application/json")
    assert r.status_code == 400, r.content
    assert "size" in r.json()["errors"]
    assert not UploadSession.objects.exists()


@pytest.mark.parametrize("body,field", [
    ({"filename": "", "size": 10}, "filename"),
    ({"size": 10}, "filename"),
])
def test_an_upload_needs_a_file_name(alice, body, field):
    r = token_client(alice).post("/api/uploads/", body, content_type="application/json")
    assert r.status_code == 400 and field in r.json()["errors"]


def test_bad_fields_on_dataset_endpoints_are_named(alice, sent_tasks):
    ds = ready_dataset(alice)
    c = token_client(alice)
    before = _state()
    r = c.patch(f"/api/datasets/{ds.pk}/", {"name": ""}, content_type="application/json")
    assert r.status_code == 400 and "name" in r.json()["errors"]
    r = c.patch(f"/api/datasets/{ds.pk}/", {"name": ["x"]}, content_type="application/json")
    assert r.status_code == 400 and "name" in r.json()["errors"]
    r = c.post(f"/api/datasets/{ds.pk}/share/", {"username": {"a": 1}}, content_type="application/json")
    assert r.status_code == 400 and "username" in r.json()["errors"]
    r = c.post(f"/api/datasets/{ds.pk}/share/", {"username": "bob", "action": "drop"},
               content_type="application/json")
    assert r.status_code == 400 and "action" in r.json()["errors"]
    r = c.post("/api/datasets/", {"upload": "not-a-uuid"}, content_type="application/json")
    assert r.status_code == 400 and "upload" in r.json()["errors"]
    r = c.post("/api/datasets/", {"file": SimpleUploadedFile("d.csv", b"a,label\n1,x\n"), "image_size": "1.5"})
    assert r.status_code == 400 and "image_size" in r.json()["errors"]
    r = c.get(f"/api/jobs/{finished_job(alice, ds).pk}/events/?limit=0")
    assert r.status_code == 400 and "limit" in r.json()["errors"]
    assert _state()[0] == before[0] and sent_tasks == []


CSV = b"a,b,label\n" + b"".join(b"%d,%d,%s\n" % (i, i * 2, b"xy"[i % 2:i % 2 + 1]) for i in range(40))


def _post_csv(client, django_capture_on_commit_callbacks=None):
    if django_capture_on_commit_callbacks is None:  # a transactional test: on_commit runs at once
        return client.post("/api/datasets/", {"file": SimpleUploadedFile("d.csv", CSV), "name": "fast"})
    with django_capture_on_commit_callbacks(execute=True):
        return client.post("/api/datasets/", {"file": SimpleUploadedFile("d.csv", CSV), "name": "fast"})


# Real commits: the ingest is queued when create_dataset's transaction commits, before the view answers.
@pytest.mark.django_db(transaction=True)
def test_an_ingest_that_refused_the_file_before_the_answer_is_a_400_with_its_reason_not_503(
        alice, monkeypatch):
    def fast_refusing_worker(name, *args, queue=None):  # the ingest ran (and refused) before the view answered
        assert name == INGEST_TASK
        dataset_services.fail_ingest(Dataset.objects.get(pk=args[0]), "the label column has only one class")

    monkeypatch.setattr("webapp.celery.send", fast_refusing_worker)
    r = _post_csv(token_client(alice))
    assert r.status_code == 400, r.content
    assert r.json()["detail"] == "the label column has only one class" and r.json()["status"] == "failed"
    assert not Dataset.objects.exists() and IngestFailure.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_broker_that_is_down_is_a_503(alice, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("Connection refused")

    monkeypatch.setattr("webapp.celery.send", down)
    r = _post_csv(token_client(alice))
    assert r.status_code == 503, r.content
    assert "could not be reached" in r.json()["detail"] and not Dataset.objects.exists()


def test_a_dataset_upload_with_a_token_only(alice, sent_tasks, django_capture_on_commit_callbacks):
    r = _post_csv(token_client(alice), django_capture_on_commit_callbacks)
    assert r.status_code == 201, r.content
    assert r.json()["status"] == "ingesting" and sent_tasks == [(INGEST_TASK, r.json()["id"])]


def _model_zip(tmp_path) -> bytes:
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, dtype=np.float32)}, str(tmp_path / "w.safetensors"))
    return hfmodels.zip_bytes({"bert/config.json": json.dumps({"model_type": "bert"}).encode(),
                               "bert/model.safetensors": (tmp_path / "w.safetensors").read_bytes()})


def test_a_model_zip_upload_works_with_a_token_only(alice, bob, tmp_path, sent_tasks,
                                                     django_capture_on_commit_callbacks):
    c = token_client(alice)
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post("/api/models/", {"name": "my-bert", "task": "text_classification", "description": "tiny",
                                    "file": SimpleUploadedFile("m.zip", _model_zip(tmp_path))})
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["reference"] == "local:my-bert" and body["status"] == "extracting" and body["owner"] == "alice"
    assert sent_tasks == [(MODELZIP_TASK, body["id"])]
    assert [m["name"] for m in c.get("/api/models/").json()["models"]] == ["my-bert"]
    assert token_client(bob).get("/api/models/").json()["models"] == []


def test_a_model_zip_upload_from_a_chunked_upload(alice, tmp_path, sent_tasks, django_capture_on_commit_callbacks):
    data = _model_zip(tmp_path)
    c = token_client(alice)
    sid = c.post("/api/uploads/", {"filename": "m.zip", "size": len(data)}, content_type="application/json").json()["id"]
    r = c.put(f"/api/uploads/{sid}/", data, content_type="application/octet-stream",
              headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"})
    assert r.status_code == 200, r.content
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post("/api/models/", {"name": "chunked", "task": "text_classification", "upload": sid},
                   content_type="application/json")
    assert r.status_code == 201, r.content
    assert not UploadSession.objects.exists() and LocalModel.objects.get().name == "chunked"


@pytest.mark.parametrize("fields,message", [
    ({"name": "bad name!", "task": "text_classification"}, "name"),
    ({"name": "ok", "task": "painting"}, "task"),
    ({"name": "ok", "task": "text_classification"}, "choose a ZIP"),
])
def test_a_refused_model_upload_is_a_400_and_leaves_nothing(alice, tmp_path, sent_tasks, fields, message):
    r = token_client(alice).post("/api/models/", fields)
    assert r.status_code == 400 and message in json.dumps(r.json()), r.content
    assert not LocalModel.objects.exists() and sent_tasks == []


def test_a_zip_that_is_not_a_model_is_refused_with_its_reason(alice, sent_tasks):
    r = token_client(alice).post("/api/models/", {"name": "x", "task": "text_classification",
                                                  "file": SimpleUploadedFile("m.zip", hfmodels.zip_bytes(
                                                      {"readme.txt": b"hello"}))})
    assert r.status_code == 400 and "config.json" in r.json()["detail"]
    assert not LocalModel.objects.exists()


def test_architectures_give_list_defaults_as_lists_like_jobs_store_them(alice, sent_tasks):
    c = token_client(alice)
    archs = {a["name"]: a for a in c.get("/api/architectures/").json()["architectures"]}
    hidden = {f["name"]: f for f in archs["mlp"]["model_config"]}["hidden_sizes"]
    assert hidden["kind"] == "ints" and hidden["default"] == [64, 64]
    for arch in archs.values():
        for f in arch["model_config"]:
            if f["kind"] == "ints":
                assert isinstance(f["default"], list), (arch["name"], f)
    ds = ready_dataset(alice)
    r = c.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp",
                              "model_config": {"hidden_sizes": hidden["default"]}}, content_type="application/json")
    assert r.status_code == 201, r.content
    assert r.json()["model_config"]["hidden_sizes"] == hidden["default"]


def test_an_unknown_architecture_lists_the_valid_names(alice, sent_tasks):
    ds = ready_dataset(alice)
    r = token_client(alice).post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "gru"},
                                 content_type="application/json")
    message = r.json()["errors"]["architecture"]
    assert r.status_code == 400 and "unknown architecture 'gru'" in message
    assert "mlp" in message and "transformer" in message and "rnn" in message
    assert not Job.objects.exists()


def test_artifacts_are_served_with_the_media_type_the_schema_names(alice):
    job = finished_job(alice)
    r = token_client(alice).get(f"/api/jobs/{job.pk}/artifacts/config.json")
    assert r.status_code == 200 and r["Content-Type"] == "application/json"
    r = token_client(alice).get(f"/api/jobs/{job.pk}/artifacts/nope.pt")
    assert r.status_code == 404 and r.json()["detail"] == "no such artifact"


def test_try_and_onnx_are_in_the_api(alice, bob, sent_tasks):
    job = finished_job(alice)
    c = token_client(alice)
    r = c.get(f"/api/jobs/{job.pk}/onnx/")
    assert r.status_code == 200 and r.json()["onnx"] is None
    assert [a["name"] for a in r.json()["artifacts"]] == ["config.json"]
    r = c.post(f"/api/jobs/{job.pk}/predictions/", {"features": {"x": "1", "y": "2"}},
               content_type="application/json")
    assert r.status_code in (202, 409), r.content  # 409: this factory job has no model file to try
    assert token_client(bob).get(f"/api/jobs/{job.pk}/onnx/").status_code == 404


def test_the_schema_documents_errors_websockets_and_binary_uploads():
    schema = Client().get("/api/schema/?format=json").json()
    assert "ws/jobs/" in schema["info"]["description"]
    ops = [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]
    assert len(ops) >= 20
    for path, method, op in ops:
        if path == "/api/schema/":
            continue
        assert op.get("description"), (path, method)
        for code in ("401", "403", "429"):
            assert code in op["responses"], (path, method, code)
        for code, resp in op["responses"].items():
            for media in resp.get("content", {}).values():
                assert media["schema"] != {"type": "object", "additionalProperties": {}}, (path, method, code)
    upload = schema["components"]["schemas"]["DatasetUploadRequest"]["properties"]["file"]
    assert upload == {"type": "string", "format": "binary",
                      "description": "the file, for files up to TRAINYARD_MAX_REQUEST_MB"}
    size = schema["components"]["schemas"]["UploadStartRequest"]["properties"]["size"]
    assert size["type"] == "integer" and size["minimum"] == 1
    artifact = schema["paths"]["/api/jobs/{id}/artifacts/{name}"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/markdown", "image/png", "application/octet-stream"} <= set(artifact)
