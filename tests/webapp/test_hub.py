"""The Models page and the model source of Hugging Face jobs: uploads are checked and private
to their owner, registered models are everyone's, and a job's local:NAME must exist and fit."""

from __future__ import annotations

import json
import re
import os
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests import hfmodels
from webapp.datasets.models import Dataset
from webapp.hub.models import LocalModel

CONFIG = json.dumps({"model_type": "bert"}).encode()


def _weights(tmp_path) -> bytes:
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, dtype=np.float32)}, str(tmp_path / "w.safetensors"))
    return (tmp_path / "w.safetensors").read_bytes()


def _client(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def _upload(client, name, data: bytes, task="text_classification"):
    return client.post("/models/", {"name": name, "task": task,
                                    "file": SimpleUploadedFile("m.zip", data, content_type="application/zip")})


def _run_extraction(name: str) -> str:
    from workers.adapters.hub_tasks import extract_model_zip

    return extract_model_zip(str(LocalModel.objects.get(name=name).pk))


@pytest.mark.django_db
def test_upload_is_checked_private_and_deletable(alice, bob, staff, tmp_path, settings, sent_tasks):
    data = hfmodels.zip_bytes({"bert/config.json": CONFIG, "bert/model.safetensors": _weights(tmp_path)})
    r = _upload(_client(alice), "my-bert", data)
    assert r.status_code == 302
    _run_extraction("my-bert")  # what the ingest worker does with the queued ZIP
    model = LocalModel.objects.get(name="my-bert")
    assert model.owner == alice and sorted(os.listdir(model.path)) == ["config.json", "model.safetensors"]
    assert "local:my-bert" in _client(alice).get("/models/").content.decode()
    assert "local:my-bert" in _client(alice).get("/jobs/new/").content.decode()  # the picker offers it
    assert "my-bert" not in _client(bob).get("/models/").content.decode()
    assert "my-bert" not in _client(bob).get("/jobs/new/").content.decode()
    assert [m["reference"] for m in _client(alice).get("/api/models/").json()["models"]] == ["local:my-bert"]
    assert _client(bob).get("/api/models/").json()["models"] == []
    assert _client(bob).post(f"/models/{model.pk}/delete/").status_code == 404
    assert _client(alice).post(f"/models/{model.pk}/delete/").status_code == 302
    assert not LocalModel.objects.exists() and not os.path.exists(model.path)


@pytest.mark.django_db
def test_bad_zips_get_a_message_and_leave_nothing(alice, tmp_path, settings):
    weights = _weights(tmp_path)
    cases = [
        ({"../config.json": CONFIG, "model.safetensors": weights}, "&#x27;..&#x27;"),
        ({"config.json": CONFIG, "pytorch_model.bin": b"pickle"}, "no safetensors"),
        ({"model.safetensors": weights}, "no config.json"),
    ]
    for entries, message in cases:
        r = _upload(_client(alice), "x", hfmodels.zip_bytes(entries))
        assert r.status_code == 400 and message in r.content.decode(), r.content.decode()[:3000]
    assert _upload(_client(alice), "../x", b"PK").status_code == 400
    assert not LocalModel.objects.exists()
    models_dir = Path(settings.DATA_DIR) / "models"
    assert not models_dir.exists() or os.listdir(models_dir) == []


@pytest.mark.django_db
def test_job_model_source_is_checked_before_queueing(alice, bob, sent_tasks, tmp_path):
    ds = Dataset.objects.create(owner=alice, name="reviews", original_filename="r.csv", kind="text",
                                status=Dataset.Status.READY,
                                info={"kind": "text", "task": "classification", "classes": ["neg", "pos"]})
    api = Client()
    from tests.webapp.factories import api_token

    api.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(alice)}"

    def submit(model, arch="hf_text_classification", **train):
        return api.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": arch, "model_config": {"model": model},
                                       "train_config": train}, content_type="application/json")

    r = submit("local:nothing")
    assert r.status_code == 400 and "no local model named 'nothing'" in r.json()["errors"]["model_config.model"]
    LocalModel.objects.create(name="bobs", task="text_classification", path="/x", owner=bob)
    assert submit("local:bobs").status_code == 400  # bob's upload is not alice's
    LocalModel.objects.create(name="gpt", task="causal_lm", path="/x")
    assert "not text classification" in submit("local:gpt").json()["errors"]["model_config.model"]
    assert "Hub id" in submit("../../etc").json()["errors"]["model_config.model"]
    assert "optimizer" in str(submit("org/model", optimizer="rmsprop").json()["errors"])
    from webapp.jobs.models import Job

    assert not Job.objects.exists()
    LocalModel.objects.create(name="shared-bert", task="text_classification", path="/x")
    assert submit("local:shared-bert").status_code == 201
    assert submit("sentence-transformers/all-MiniLM-L6-v2").status_code == 201  # checked when it starts
    assert Job.objects.filter(status="queued").count() == 2


def _folder(path: Path, files: dict[str, bytes]) -> Path:
    path.mkdir(parents=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


def _admin_add(staff, name: str, path: str, task="text_classification"):
    return _client(staff).post("/admin/hub/localmodel/add/", {"name": name, "task": task, "path": path,
                                                               "owner": "", "description": ""})


def _datalist(page: str, arch: str) -> str:
    """The model picker's suggestions for one architecture on the new-job form."""
    start = page.index(f'<datalist id="m_{arch}__model-list">')
    return page[start:page.index("</datalist>", start)]


@pytest.mark.django_db
def test_an_admin_registered_model_is_offered_to_every_user(alice, bob, charlie, staff, tmp_path):
    folder = _folder(tmp_path / "bert", {"config.json": CONFIG, "model.safetensors": _weights(tmp_path)})
    r = _admin_add(staff, "shared-bert", str(folder))
    assert r.status_code == 302, r.content.decode()[:3000]
    model = LocalModel.objects.get(name="shared-bert")
    assert model.owner is None and not model.is_upload  # registered: nobody's upload
    for user in (alice, bob, charlie, staff):
        page = _client(user).get("/jobs/new/").content.decode()
        assert '<option value="local:shared-bert">' in _datalist(page, "hf_text_classification"), user
        assert "local:shared-bert" not in _datalist(page, "hf_causal_lm")  # offered for its task only
        # ... and prefilled, in place of a Hub id that fails on workers without the Hub.
        field = re.search(r'<input[^>]*name="m_hf_text_classification__model"[^>]*>', page).group(0)
        assert 'value="local:shared-bert"' in field, field
        rows = _client(user).get("/api/models/").json()["models"]
        assert [(m["reference"], m["task"], m["uploaded"], m["owner"]) for m in rows] == [
            ("local:shared-bert", "text_classification", False, None)], user


@pytest.mark.django_db
def test_the_admin_form_refuses_what_the_worker_must_not_load(staff, tmp_path):
    weights = _weights(tmp_path)
    remote = json.dumps({"model_type": "bert", "auto_map": {"AutoModel": "modeling_x.XModel"}}).encode()
    cases = {
        "missing": (str(tmp_path / "nowhere"), f"there is no folder at {tmp_path / 'nowhere'} on this server"),
        "pickle-only": (str(_folder(tmp_path / "pickle", {"config.json": CONFIG, "pytorch_model.bin": b"x"})),
                        "this folder has only pickle weights (pytorch_model.bin), which Trainyard refuses to load"),
        "remote-code": (str(_folder(tmp_path / "remote", {"config.json": remote, "model.safetensors": weights})),
                        "this folder needs its own Python code (auto_map in config.json)"),
    }
    for name, (path, message) in cases.items():
        r = _admin_add(staff, name, path)
        page = r.content.decode()
        assert r.status_code == 200 and "errornote" in page, name  # the form again, with the error
        assert message in page, (name, page[page.find("errorlist"):][:1000])
    assert not LocalModel.objects.exists()


@pytest.mark.django_db
def test_the_extraction_runs_on_a_worker_and_a_late_refusal_leaves_only_its_reason(alice, tmp_path, settings, sent_tasks,
                                                                                    django_capture_on_commit_callbacks):
    # The central directory is fine (config.json, weights), so the request accepts and queues it;
    # what config.json says is only read once the worker has unpacked it.
    remote = json.dumps({"model_type": "bert", "auto_map": {"AutoModel": "modeling_x.XModel"}}).encode()
    data = hfmodels.zip_bytes({"config.json": remote, "model.safetensors": _weights(tmp_path)})
    with django_capture_on_commit_callbacks(execute=True):
        assert _upload(_client(alice), "remote", data).status_code == 302
    model = LocalModel.objects.get(name="remote")
    assert model.status == "extracting" and model.zip_path.exists()
    assert sent_tasks == [("trainyard.extract_model_zip", str(model.pk))]
    page = _client(alice).get("/jobs/new/").content.decode()
    assert "local:remote" not in _datalist(page, "hf_text_classification")  # not pickable until ready
    assert _run_extraction("remote") == "failed"
    model.refresh_from_db()
    assert model.status == "failed" and "auto_map" in model.error
    assert not os.path.exists(model.path) and not model.zip_path.exists()
    assert "auto_map" in _client(alice).get("/models/").content.decode()  # the owner sees why
    assert _client(alice).post(f"/models/{model.pk}/delete/").status_code == 302
    assert not LocalModel.objects.exists() and os.listdir(Path(settings.DATA_DIR) / "models") == []


@pytest.mark.django_db
def test_a_model_deleted_before_its_extraction_leaves_nothing(alice, tmp_path, settings, sent_tasks):
    data = hfmodels.zip_bytes({"config.json": CONFIG, "model.safetensors": _weights(tmp_path)})
    assert _upload(_client(alice), "soon-gone", data).status_code == 302
    model = LocalModel.objects.get(name="soon-gone")
    assert _client(alice).post(f"/models/{model.pk}/delete/").status_code == 302
    from workers.adapters.hub_tasks import extract_model_zip

    assert extract_model_zip(str(model.pk)) == "gone"
    assert os.listdir(Path(settings.DATA_DIR) / "models") == []


@pytest.mark.django_db
def test_an_unreachable_broker_refuses_the_model_with_a_reason_instead_of_extracting_forever(
        alice, tmp_path, monkeypatch, django_capture_on_commit_callbacks):
    def down(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to localhost:6379")

    monkeypatch.setattr("webapp.celery.send", down)
    data = hfmodels.zip_bytes({"config.json": CONFIG, "model.safetensors": _weights(tmp_path)})
    with django_capture_on_commit_callbacks(execute=True):
        assert _upload(_client(alice), "no-broker", data).status_code == 302
    model = LocalModel.objects.get(name="no-broker")
    assert model.status == "failed" and "could not be reached" in model.error
    assert not model.zip_path.exists()
