"""Adaptive defaults at the web boundary: a zoo job's unset training settings are resolved by
models_zoo.defaults at submit (explicit values win, the job stores the resolved values, the log
says why), the form gets them with their reasons from /api/train-defaults/, and the fields the
form marks auto are resolved by the server; HF jobs keep their fine-tuning defaults."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.webapp.factories import api_token, ready_dataset
from webapp.jobs import services
from webapp.jobs.models import Job, JobEvent

pytestmark = pytest.mark.django_db


def _sequences(owner, rows=4000):
    ds = ready_dataset(owner, "seq10")
    ds.kind = "sequence"
    ds.info = {**ds.info, "kind": "sequence", "num_train": rows, "num_val": rows // 4, "input_shape": [40, 1],
               "num_outputs": 10, "num_classes": 10}
    ds.save()
    return ds


def _api(user) -> Client:
    api = Client()
    api.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
    return api


def test_unset_settings_are_resolved_and_stored_explicit_ones_win(alice, sent_tasks):
    ds = _sequences(alice)
    job = services.submit_job(alice, ds, "rnn", {"cell": "gru"}, {"seed": 3, "learning_rate": 0.01})
    tc = job.train_config
    assert (tc["epochs"], tc["batch_size"], tc["optimizer"], tc["lr_schedule"]) == (96, 64, "adamw", "cosine")
    assert tc["grad_clip"] == 1.0 and tc["learning_rate"] == 0.01 and tc["seed"] == 3  # explicit wins
    note = JobEvent.objects.get(job=job, kind="log").data["text"]
    assert "epochs = 96 (4,000 training rows" in note and "learning_rate" not in note


def test_an_api_job_with_only_dataset_and_architecture_gets_them(alice, sent_tasks):
    ds = _sequences(alice)
    r = _api(alice).post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp"},
                         content_type="application/json")
    assert r.status_code == 201, r.content
    assert r.json()["train_config"]["epochs"] == 96
    assert Job.objects.get(pk=r.json()["id"]).train_config["weight_decay"] == 0.01


def test_hf_jobs_keep_their_fine_tuning_defaults(alice, sent_tasks):
    ds = ready_dataset(alice, "reviews")
    ds.kind, ds.info = "text", {**ds.info, "kind": "text", "num_train": 4000}
    ds.save()
    job = services.submit_job(alice, ds, "hf_text_classification", {"model": "org/model"}, {})
    assert (job.train_config["epochs"], job.train_config["lr_schedule"]) == (3, "constant")


def test_the_endpoint_gives_values_and_reasons_to_those_who_may_see_the_dataset(alice, charlie):
    ds = _sequences(alice)
    r = _api(alice).get("/api/train-defaults/", {"dataset": str(ds.pk), "architecture": "cnn1d"})
    assert r.status_code == 200, r.content
    epochs = r.json()["settings"]["epochs"]
    assert epochs["value"] == 96 and "4,000 training rows" in epochs["reason"]
    assert "cosine" in r.json()["rule"]
    assert _api(charlie).get("/api/train-defaults/", {"dataset": str(ds.pk), "architecture": "cnn1d"}).status_code == 404
    assert _api(alice).get("/api/train-defaults/", {"dataset": str(ds.pk), "architecture": "nope"}).status_code == 400


def test_the_form_sends_auto_fields_which_the_server_resolves(client_alice, alice, sent_tasks):
    ds = _sequences(alice)
    html = client_alice.get("/jobs/new/").content.decode()
    assert 'name="auto_fields"' in html and 'data-reason-for="tc_epochs"' in html and "/api/train-defaults/" in html
    form = {"dataset": str(ds.pk), "architecture": "mlp", "m_mlp__hidden_sizes": "64,64",
            "tc_epochs": "96", "tc_optimizer": "adamw", "tc_batch_size": "32", "tc_seed": "0",
            "auto_fields": "epochs,optimizer"}
    r = client_alice.post("/jobs/new/", form)
    assert r.status_code == 302, r.content.decode()[:2000]
    tc = Job.objects.get().train_config
    assert tc["epochs"] == 96 and tc["batch_size"] == 32  # the auto field resolved, the edited one kept
    clone = client_alice.get(f"/jobs/new/?clone={Job.objects.get().pk}").content.decode()
    assert 'name="tc_epochs" value="96"' in clone and 'name="auto_fields" value=""' in clone
