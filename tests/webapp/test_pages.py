from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from webapp.celery import INGEST_TASK, TRAIN_TASK
from webapp.datasets.models import Dataset, IngestFailure, UploadSession
from webapp.jobs.models import Job, JobEvent
from tests.webapp.factories import finished_job, ready_dataset, running_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_alice(alice):
    c = Client()
    c.force_login(alice)
    return c


def leftover_uploads() -> list[str]:
    dirs = [Path(settings.FILE_UPLOAD_TEMP_DIR), Path(settings.DATA_DIR) / "uploads"]
    return [str(p) for d in dirs if d.exists() for p in d.iterdir()]


def test_login_page_and_sign_in_rotates_session(alice):
    c = Client()
    assert c.get("/jobs/").status_code == 302
    c.get("/accounts/login/")
    before = c.cookies.get("sessionid")
    r = c.post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    assert r.status_code == 302
    assert c.cookies["sessionid"].value != (before.value if before else None)
    assert c.get("/jobs/").status_code == 200
    r = c.post("/accounts/logout/")
    assert c.get("/jobs/").status_code == 302


def test_wrong_password_is_refused(alice):
    r = Client().post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert r.status_code == 200 and b"match" in r.content and b'role="alert"' in r.content


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


def test_new_job_form_lists_mlp_settings(client_alice, alice):
    ready_dataset(alice)
    html = client_alice.get("/jobs/new/").content.decode()
    for field in ("m_mlp__hidden_sizes", "m_mlp__activation", "m_mlp__dropout", "tc_epochs", "tc_batch_size",
                  "tc_learning_rate", "tc_optimizer", "tc_seed"):
        assert f'name="{field}"' in html
    for opt in ("sgd", "sgd_momentum", "adam", "adamw", "rmsprop"):
        assert f'value="{opt}"' in html


def test_submit_job_from_form(client_alice, alice, sent_tasks, django_capture_on_commit_callbacks):
    from webapp.cluster.models import Worker

    Worker.objects.create(name="w@host", hostname="host", queues="train", device="cpu")  # a free slot: dispatched
    ds = ready_dataset(alice)
    form = {"dataset": str(ds.pk), "architecture": "mlp", "m_mlp__hidden_sizes": "16, 8",
            "m_mlp__activation": "gelu", "m_mlp__dropout": "0.1", "tc_epochs": "3", "tc_batch_size": "4",
            "tc_learning_rate": "0.01", "tc_optimizer": "sgd_momentum", "tc_seed": "7"}
    with django_capture_on_commit_callbacks(execute=True):
        r = client_alice.post("/jobs/new/", form)
    job = Job.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/jobs/{job.pk}/"
    assert job.model_config == {"hidden_sizes": [16, 8], "activation": "gelu", "dropout": 0.1, "norm": "none"}
    assert job.train_config["optimizer"] == "sgd_momentum" and job.train_config["seed"] == 7
    assert job.status == "queued" and sent_tasks == [(TRAIN_TASK, str(job.pk))]
    assert list(JobEvent.objects.filter(job=job).values_list("seq", "kind")) == [(1, "status")]


@pytest.mark.parametrize("field,value,message", [
    ("tc_epochs", "0", "must be at least 1"),
    ("tc_learning_rate", "fast", "must be a number"),
    ("tc_optimizer", "adagrad", "must be one of"),
    ("m_mlp__hidden_sizes", "16,x", "comma-separated list"),
    ("m_mlp__dropout", "0.95", "at most 0.9"),
])
def test_bad_job_settings_are_rejected_and_nothing_is_queued(client_alice, alice, sent_tasks, field, value, message):
    ds = ready_dataset(alice)
    r = client_alice.post("/jobs/new/", {"dataset": str(ds.pk), "architecture": "mlp", field: value})
    assert r.status_code == 400 and message in r.content.decode()
    assert Job.objects.count() == 0 and sent_tasks == []


def test_cannot_train_on_someone_elses_or_unready_dataset(client_alice, alice, bob, sent_tasks):
    other = ready_dataset(bob)
    r = client_alice.post("/jobs/new/", {"dataset": str(other.pk), "architecture": "mlp"})
    assert r.status_code == 400 and Job.objects.count() == 0
    mine = ready_dataset(alice)
    Dataset.objects.filter(pk=mine.pk).update(status="ingesting")
    r = client_alice.post("/jobs/new/", {"dataset": str(mine.pk), "architecture": "mlp"})
    assert r.status_code == 400 and "not ready" in r.content.decode()


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


def test_cancel_queued_and_running_jobs(client_alice, alice):
    queued = Job.objects.create(owner=alice, dataset=ready_dataset(alice), name="q", architecture="mlp")
    client_alice.post(f"/jobs/{queued.pk}/cancel/")
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    running = running_job(alice)
    client_alice.post(f"/jobs/{running.pk}/cancel/")
    running.refresh_from_db()
    assert running.status == "running" and running.cancel_requested
    done = finished_job(alice)
    client_alice.post(f"/jobs/{done.pk}/cancel/")
    done.refresh_from_db()
    assert done.status == "succeeded" and not done.cancel_requested


def test_download_verifies_checksum(client_alice, alice):
    job = finished_job(alice)
    r = client_alice.get(f"/jobs/{job.pk}/artifacts/config.json")
    assert r.status_code == 200 and r["X-Content-Type-Options"] == "nosniff"
    assert "attachment" in r["Content-Disposition"]
    (job.directory / "artifacts" / "config.json").write_text("tampered")
    assert client_alice.get(f"/jobs/{job.pk}/artifacts/config.json").status_code == 404


def test_delete_running_job_is_refused(client_alice, alice):
    job = running_job(alice)
    client_alice.post(f"/jobs/{job.pk}/delete/")
    assert Job.objects.filter(pk=job.pk).exists()
    done = finished_job(alice)
    directory = done.directory
    client_alice.post(f"/jobs/{done.pk}/delete/")
    assert not Job.objects.filter(pk=done.pk).exists() and not directory.exists()


def test_api_token_page_creates_a_token_shown_once(client_alice, alice):
    r = client_alice.post("/account/token/", follow=True)
    html = r.content.decode()
    assert 'id="api-token"' in html
    assert 'id="api-token"' not in client_alice.get("/account/profile/").content.decode()


def test_openapi_schema_is_served():
    r = Client().get("/api/schema/")
    assert r.status_code == 200
    body = r.content.decode()
    assert "/api/jobs/" in body and "/api/datasets/" in body and "openapi" in body


def test_csrf_enforced_on_forms_and_session_api(alice):
    c = Client(enforce_csrf_checks=True)
    c.force_login(alice)
    job = running_job(alice)
    assert c.post(f"/jobs/{job.pk}/cancel/").status_code == 403
    assert c.post(f"/api/jobs/{job.pk}/cancel/").status_code == 403
    job.refresh_from_db()
    assert not job.cancel_requested


def test_security_headers(client_alice):
    r = client_alice.get("/jobs/")
    csp = r["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r["X-Frame-Options"] == "DENY"
    assert os.environ.get("TRAINYARD_DATA_DIR")


def test_unreachable_broker_keeps_the_job_queued_and_fails_the_upload_with_a_reason(
        client_alice, alice, monkeypatch, django_capture_on_commit_callbacks):
    def down(*args, queue=None):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("webapp.celery.send", down)
    from webapp.cluster.models import Worker
    from webapp.jobs.scheduler import dispatch

    Worker.objects.create(name="w@host", hostname="host", queues="train", device="cpu")  # a free slot: dispatched
    ds = ready_dataset(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client_alice.post("/jobs/new/", {"dataset": str(ds.pk), "architecture": "mlp"})
    job = Job.objects.get()
    # Redis restarting must not fail a queued job: it waits, undispatched, with the reason ...
    assert job.status == "queued" and job.dispatched_at is None and "could not be reached" in job.wait_reason
    assert "could not be reached" in client_alice.get(f"/jobs/{job.pk}/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        r = client_alice.post("/datasets/", {"file": SimpleUploadedFile("d.csv", b"a,label\n1,x\n2,y\n")})
    # Nothing of the upload is kept (no row, no file); the reason is on the datasets page.
    assert list(Dataset.objects.values_list("pk", flat=True)) == [ds.pk] and leftover_uploads() == []
    failure = IngestFailure.objects.get()
    assert "could not be reached" in failure.error and failure.original_filename == "d.csv"
    assert r["Location"] in (f"/datasets/{failure.pk}/", "/datasets/")
    r = client_alice.get(r["Location"], follow=True)
    assert r.redirect_chain[-1][0] == "/datasets/" and "could not be reached" in r.content.decode()
    # The job, once Redis answers: the next pass, once Redis answers, sends it.
    sent = []
    monkeypatch.setattr("webapp.celery.send", lambda name, *args, queue=None: sent.append(args[0]))
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch() == [str(job.pk)]
    assert sent == [str(job.pk)]


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


def test_login_is_throttled_per_username(alice, settings):
    c = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert c.post("/accounts/login/", {"username": "alice", "password": "wrong"}).status_code == 200
    assert c.post("/accounts/login/", {"username": "alice", "password": "wrong"}).status_code == 429
    r = c.post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    assert r.status_code == 429 and b"Too many attempts" in r.content  # even the right password now
    assert c.get("/jobs/").status_code == 302


def test_per_user_cap_on_active_jobs_answers_429(client_alice, alice, bob, settings, sent_tasks):
    settings.TRAINYARD_MAX_ACTIVE_JOBS_PER_USER = 2
    ds = ready_dataset(alice)
    running_job(alice, ds)
    Job.objects.create(owner=alice, dataset=ds, name="q", architecture="mlp")
    r = client_alice.post("/jobs/new/", {"dataset": str(ds.pk), "architecture": "mlp"})
    assert r.status_code == 429 and "the limit is 2" in r.content.decode()
    api = Client()
    api.force_login(alice)
    r = api.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp"}, content_type="application/json")
    assert r.status_code == 429 and "the limit is 2" in r.json()["errors"]["jobs"]
    assert Job.objects.filter(owner=alice).count() == 2
    other = ready_dataset(bob)  # other users are not affected
    b = Client()
    b.force_login(bob)
    assert b.post("/api/jobs/", {"dataset": str(other.pk), "architecture": "mlp"},
                  content_type="application/json").status_code == 201


def test_clone_prefills_the_form(client_alice, alice, bob):
    ds = ready_dataset(alice)
    job = Job.objects.create(owner=alice, dataset=ds, name="orig", architecture="mlp", status="succeeded",
                             model_config={"hidden_sizes": [32, 16], "activation": "gelu", "dropout": 0.1,
                                           "norm": "layer"},
                             train_config={"epochs": 7, "optimizer": "adamw", "nesterov": True, "seed": 5})
    html = client_alice.get(f"/jobs/new/?clone={job.pk}").content.decode()
    assert 'value="orig (copy)"' in html and 'name="m_mlp__hidden_sizes" value="32,16"' in html
    assert '<option value="gelu" selected>' in html and '<option value="adamw" selected>' in html
    assert 'name="tc_epochs" value="7"' in html and 'name="tc_nesterov" value="true" checked' in html
    other = Client()
    other.force_login(bob)
    assert other.get(f"/jobs/new/?clone={job.pk}").status_code == 404


def test_compare_shows_hyperparameters_and_metrics_of_visible_jobs_only(client_alice, alice, bob):
    a = finished_job(alice)
    b = finished_job(alice)
    Job.objects.filter(pk=a.pk).update(metrics={"accuracy": 0.91}, train_config={"epochs": 3})
    Job.objects.filter(pk=b.pk).update(metrics={"accuracy": 0.95}, train_config={"epochs": 9})
    html = client_alice.get(f"/jobs/compare/?ids={a.pk}&ids={b.pk}").content.decode()
    assert "final accuracy" in html and "0.9100" in html and "0.9500" in html and "model.hidden_sizes" in html
    assert 'src="/static/js/compare.js"' in html
    foreign = finished_job(bob)
    assert client_alice.get(f"/jobs/compare/?ids={a.pk}&ids={foreign.pk}").status_code == 404


def test_queue_position_is_shown_for_queued_jobs(client_alice, alice, bob):
    ds = ready_dataset(alice)
    first = Job.objects.create(owner=bob, dataset=ready_dataset(bob), name="b1", architecture="mlp")
    mine = Job.objects.create(owner=alice, dataset=ds, name="a1", architecture="mlp")
    assert first.queue_position == 0 and mine.queue_position == 1
    assert "1 job ahead in the queue" in client_alice.get(f"/jobs/{mine.pk}/").content.decode()
    assert "1 ahead" in client_alice.get("/jobs/").content.decode()
    api = Client()
    api.force_login(alice)
    assert api.get(f"/api/jobs/{mine.pk}/").json()["queue_position"] == 1
    Job.objects.filter(pk=first.pk).update(status="running")
    assert api.get(f"/api/jobs/{mine.pk}/").json()["queue_position"] == 0


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
    assert ("<tr><th>Split</th><td>seeded random split, stratified by class (0.25 validation, seed 0)</td></tr>"
            in html)
    assert '<span class="big">15</span> train / <span class="big">5</span> validation' in html

    # An archive with its own train/ and val/ folders keeps that split, and says so.
    zip_path = _png_zip(tmp_path / "s.zip", {"train/dark": 20, "train/light": 200, "val/dark": 30, "val/light": 210})
    client_alice.post("/datasets/", {"file": SimpleUploadedFile("s.zip", zip_path.read_bytes())})
    img = Dataset.objects.get(kind="image")
    assert ingest_dataset(str(img.pk)) == "ready"
    html = client_alice.get(f"/datasets/{img.pk}/").content.decode()
    assert "<tr><th>Split</th><td>the archive's own train/ and val/ folders</td></tr>" in html
    assert "<tr><th>Input shape</th><td>[1, 8, 8]</td></tr>" in html
    assert "8×8 px, grayscale" in html
    assert '<span class="big">10</span> train / <span class="big">10</span> validation' in html
