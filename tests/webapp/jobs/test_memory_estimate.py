"""The job form's GPU memory estimate: computed from the chosen model's config.json, shown with
the largest registered GPU, a warning when none fits, and the minimum GPU memory the form sends."""

from __future__ import annotations

import pytest
from django.test import Client

from models_zoo.hf.memory import GB
from tests import hfmodels
from tests.webapp.factories import ready_dataset
from webapp.cluster.models import Worker
from webapp.hub.models import LocalModel
from webapp.jobs.models import Job


def _client(user):
    c = Client()
    c.force_login(user)
    return c


def _worker(name: str, gb: float):
    return Worker.objects.create(name=name, hostname="h", queues="train", device="cuda:0",
                                 gpus=[{"index": 0, "name": f"GPU {gb:g}G", "memory_total": int(gb * GB)}])


QUERY = {"architecture": "hf_text_classification", "m_hf_text_classification__model": "local:minilm",
         "m_hf_text_classification__max_length": "128", "m_hf_text_classification__method": "full",
         "tc_batch_size": "16"}


@pytest.mark.django_db
def test_the_estimate_names_the_largest_gpu_and_warns_when_none_fits(alice):
    LocalModel.objects.create(name="minilm", task="text_classification", path=str(hfmodels.minilm_dir()))
    c = _client(alice)
    d = c.get("/jobs/new/memory/", QUERY).json()
    assert d["available"] and d["largest_gpu"] is None and d["fits"] is None and d["warning"] == ""
    assert d["estimate"]["params"] == 22_713_216  # from the folder's safetensors
    assert d["min_gpu_memory_gb"] == 2 and "GB" in d["text"]
    _worker("small", 0.5)
    _worker("big", 1.2)
    d = c.get("/jobs/new/memory/", QUERY).json()
    assert d["fits"] is False and d["largest_gpu"]["name"] == "GPU 1.2G"
    assert f"about {d['estimate']['total'] / GB:.1f} GB" in d["warning"] and "GPU 1.2G, 1 GB" in d["warning"]
    lora = c.get("/jobs/new/memory/", {**QUERY, "m_hf_text_classification__method": "lora"}).json()
    assert lora["estimate"]["total"] < d["estimate"]["total"] and lora["fits"] is True and not lora["warning"]
    # Nothing to estimate: a zoo architecture, a Hub model not in the cache.
    assert not c.get("/jobs/new/memory/", {"architecture": "mlp"}).json()["available"]
    gone = c.get("/jobs/new/memory/", {**QUERY, "m_hf_text_classification__model": "local:nope"}).json()
    assert not gone["available"] and "no config.json" in gone["why"]
    assert Client().get("/jobs/new/memory/", QUERY).status_code in (302, 401, 403)


@pytest.mark.django_db
def test_a_job_on_several_devices_is_estimated_per_gpu(alice):
    """Each rank holds the whole model and batch_size / devices rows: 16 rows on 2 devices need
    what 8 rows on one do, and less than 16 on one."""
    LocalModel.objects.create(name="minilm", task="text_classification", path=str(hfmodels.minilm_dir()))
    c = _client(alice)
    two = c.get("/jobs/new/memory/", {**QUERY, "tc_gpus": "2"}).json()["estimate"]["total"]
    eight = c.get("/jobs/new/memory/", {**QUERY, "tc_batch_size": "8"}).json()["estimate"]["total"]
    sixteen = c.get("/jobs/new/memory/", QUERY).json()["estimate"]["total"]
    assert two == eight < sixteen


@pytest.mark.django_db
def test_the_form_shows_the_estimate_box_and_sends_the_minimum_gpu_memory(alice, sent_tasks):
    ds = ready_dataset(alice)
    c = _client(alice)
    html = c.get("/jobs/new/").content.decode()
    assert 'id="memory-estimate"' in html and 'name="min_gpu_memory_gb"' in html
    r = c.post("/jobs/new/", {"dataset": str(ds.pk), "architecture": "mlp", "min_gpu_memory_gb": "12"})
    job = Job.objects.get() if r.status_code == 302 else None
    assert job is not None and job.min_gpu_memory_gb == 12, r.content.decode()[:2000]
    r = c.post("/jobs/new/", {"dataset": str(ds.pk), "architecture": "mlp", "min_gpu_memory_gb": "x"})
    assert r.status_code == 400 and "whole number of GB" in r.content.decode()


@pytest.mark.django_db
def test_a_job_no_registered_gpu_can_hold_is_asked_about_before_it_is_queued(alice, sent_tasks):
    from tests.webapp.factories import ready_dataset as _ds
    from webapp.datasets.models import Dataset

    LocalModel.objects.create(name="minilm", task="text_classification", path=str(hfmodels.minilm_dir()))
    ds = _ds(alice)
    Dataset.objects.filter(pk=ds.pk).update(kind="text", info={**ds.info, "kind": "text", "task": "classification"})
    _worker("small", 0.5)
    post = {"dataset": str(ds.pk), **QUERY}
    c = _client(alice)
    r = c.post("/jobs/new/", post)
    html = r.content.decode()
    assert r.status_code == 409 and 'id="memory-refusal"' in html and "GPU 0.5G" in html and "about " in html
    assert 'name="memory_confirmed"' in html and not Job.objects.exists()
    r = c.post("/jobs/new/", {**post, "memory_confirmed": "1"})
    assert r.status_code == 302, r.content.decode()[:3000]
    assert Job.objects.get().architecture == "hf_text_classification"
