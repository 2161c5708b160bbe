"""Fine-tuning settings at the web boundary: an HF job submitted with only its model gets the
method's fine-tuning defaults (not the zoo's 20 epochs at 1e-3), the method settings are checked
like every other setting, and a QLoRA job is refused while every live worker is CPU only (and
never dispatched to one)."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.webapp.factories import api_token, worker
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job


def _api(user) -> Client:
    api = Client()
    api.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
    return api


def _text_dataset(owner) -> Dataset:
    return Dataset.objects.create(owner=owner, name="reviews", original_filename="r.csv", kind="text",
                                  status=Dataset.Status.READY,
                                  info={"kind": "text", "task": "classification", "classes": ["neg", "pos"]})


def _submit(api, ds, model_config, train_config=None):
    return api.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "hf_text_classification",
                                   "model_config": model_config, "train_config": train_config or {}},
                    content_type="application/json")


@pytest.mark.django_db
def test_an_hf_job_with_only_its_model_gets_the_fine_tuning_defaults(alice, sent_tasks):
    ds, api = _text_dataset(alice), _api(alice)
    r = _submit(api, ds, {"model": "org/model"})
    assert r.status_code == 201, r.content
    tc = Job.objects.get(pk=r.json()["id"]).train_config
    assert (tc["epochs"], tc["learning_rate"], tc["optimizer"]) == (3, 2e-5, "adamw")
    assert tc["warmup_epochs"] == pytest.approx(0.18)
    r = _submit(api, ds, {"model": "org/model", "method": "lora", "lora_rank": 16}, {"epochs": 5})
    assert r.status_code == 201, r.content
    job = Job.objects.get(pk=r.json()["id"])
    assert job.train_config["epochs"] == 5 and 1e-4 <= job.train_config["learning_rate"] <= 2e-4
    assert job.model_config["method"] == "lora" and job.model_config["lora_rank"] == 16
    r = _submit(api, ds, {"model": "org/model", "lora_rnk": 4, "method": "dora"})
    assert r.status_code == 400
    errors = r.json()["errors"]
    assert errors["model_config.lora_rnk"] == "unknown setting" and "model_config.method" in errors


@pytest.mark.django_db
def test_qlora_is_refused_while_every_live_worker_is_cpu_only(alice, sent_tasks):
    from webapp.jobs import scheduler

    ds, api = _text_dataset(alice), _api(alice)
    worker("cpu@a")
    r = _submit(api, ds, {"model": "org/model", "method": "qlora"})
    assert r.status_code == 400
    assert "4-bit QLoRA needs a CUDA GPU" in r.json()["errors"]["model_config.method"]
    assert "cpu@a" in r.json()["errors"]["model_config.method"] and not Job.objects.exists()
    assert _submit(api, ds, {"model": "org/model", "method": "lora"}).status_code == 201  # LoRA runs on CPU

    worker("gpu@b", gpus=[{"name": "NVIDIA H100", "memory_total": 80 * 2**30}])
    r = _submit(api, ds, {"model": "org/model", "method": "qlora"})
    assert r.status_code == 201, r.content
    job = Job.objects.get(pk=r.json()["id"])
    assert not scheduler.fits(job, []) and scheduler.fits(job, [{"name": "NVIDIA H100"}])
    assert not scheduler.worker_fits("cpu@a", job.pk) and scheduler.worker_fits("gpu@b", job.pk)


@pytest.mark.django_db
def test_the_form_offers_the_methods_and_the_fine_tuning_defaults(client_alice):
    import json
    import re

    html = client_alice.get("/jobs/new/").content.decode()
    assert 'name="m_hf_causal_lm__method"' in html and '<option value="qlora"' in html
    assert 'name="m_hf_text_classification__grad_accumulation"' in html
    assert "effective batch size = batch size × this" in html
    assert "learning rate 2e-5 (full)" in html  # the rule, written on the page
    defaults = json.loads(re.search(r'<script id="train-defaults" type="application/json">(.*?)</script>',
                                    html, re.S).group(1))
    assert defaults["zoo"]["epochs"] == 20 and defaults["hf"]["full"]["learning_rate"] == 2e-5
    assert defaults["hf"]["lora"]["epochs"] == 3 and 'data-fresh="1"' in html


@pytest.mark.django_db
def test_cloning_a_job_stored_before_method_shows_freeze_encoder_as_the_method(alice, client_alice):
    old = Job.objects.create(owner=alice, dataset=_text_dataset(alice), name="old", architecture="hf_text_classification",
                             model_config={"model": "org/m", "max_length": 64, "freeze_encoder": True},
                             train_config={"epochs": 2}, status=Job.Status.SUCCEEDED)
    html = client_alice.get(f"/jobs/new/?clone={old.pk}").content.decode()
    select = html[html.index('name="m_hf_text_classification__method"'):]
    select = select[:select.index("</select>")]
    assert '<option value="freeze_encoder" selected>' in select and 'data-fresh="1"' not in html
