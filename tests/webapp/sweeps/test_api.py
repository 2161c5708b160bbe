"""The sweeps API and pages: create (refusals named), detail, cancel, promote, the schema."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.webapp.factories import api_token, finished_job, ready_dataset
from webapp.jobs.models import Job
from webapp.sweeps.models import Sweep, Trial

SPACE = {"train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
         "model.activation": {"type": "choice", "choices": ["relu", "tanh"]}}


def api(user) -> Client:
    c = Client()
    c.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
    return c


def body(ds, **kw) -> dict:
    return {"dataset": str(ds.pk), "architecture": "mlp", "space": SPACE, "metric": "loss", "budget": 5,
            "concurrency": 2, "train_config": {"epochs": 2}, "seed": 7, **kw}


@pytest.mark.django_db
def test_create_refuses_bad_requests_naming_each_field(alice, sent_tasks):
    ds = ready_dataset(alice)
    c = api(alice)
    r = c.post("/api/sweeps/", body(ds, space={"train.learnin_rate": {"type": "float", "low": 1, "high": 2},
                                               "model.dropout": {"type": "float", "low": 0.5, "high": 0.1}},
                                    metric="r2"), content_type="application/json")
    assert r.status_code == 400
    errors = r.json()["errors"]
    assert errors["space.train.learnin_rate"].startswith("unknown setting")
    assert errors["space.model.dropout"] == "low (0.5) must be below high (0.1)"
    assert errors["metric"] == "r2 is not reported for classification; choose one of loss, accuracy, f1"
    r = c.post("/api/sweeps/", body(ds, train_config={"epochs": 0}), content_type="application/json")
    assert r.status_code == 400 and "train_config.epochs" in r.json()["errors"]
    assert not Sweep.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db
def test_create_submits_concurrency_trials_then_cancel_and_promote(alice, sent_tasks):
    ds = ready_dataset(alice)
    c = api(alice)
    r = c.post("/api/sweeps/", body(ds), content_type="application/json")
    assert r.status_code == 201, r.json()
    sweep = r.json()
    assert sweep["direction"] == "minimize" and len(sweep["trials"]) == 2
    jobs = Job.objects.filter(pk__in=[t["job"] for t in sweep["trials"]])
    assert jobs.count() == 2 and set(jobs.values_list("status", flat=True)) == {"queued"}
    for t in sweep["trials"]:
        job = jobs.get(pk=t["job"])
        assert job.train_config["learning_rate"] == t["params"]["train.learning_rate"]
        assert job.model_config["activation"] == t["params"]["model.activation"]
        assert job.train_config["epochs"] == 2 and job.owner == alice
    # The same seed and history ask for the same parameters (the study is rebuilt from the rows).
    again = c.post("/api/sweeps/", body(ds), content_type="application/json").json()
    assert [t["params"] for t in again["trials"]] == [t["params"] for t in sweep["trials"]]
    assert sweep["trials"][0]["params"] != sweep["trials"][1]["params"]

    assert c.get(f"/api/sweeps/{sweep['id']}/").json()["trials"][0]["state"] == "running"
    assert len(c.get("/api/sweeps/").json()["sweeps"]) == 2
    r = c.post(f"/api/sweeps/{sweep['id']}/promote/")
    assert r.status_code == 409 and r.json()["errors"] == {"best": "no trial has completed yet"}

    r = c.post(f"/api/sweeps/{sweep['id']}/cancel/")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert {t["state"] for t in r.json()["trials"]} == {"cancelled"}
    assert set(jobs.values_list("status", flat=True)) == {"cancelled"}

    # Promote: a new ordinary job with the best complete trial's settings.
    best_job = jobs.first()
    Trial.objects.filter(job=best_job).update(state="complete", value=0.1)
    r = c.post(f"/api/sweeps/{sweep['id']}/promote/")
    assert r.status_code == 201
    new = Job.objects.get(pk=r.json()["id"])
    assert new.train_config == best_job.train_config and new.model_config == best_job.model_config
    assert new.status == "queued" and "best (trial" in new.name


@pytest.mark.django_db
def test_pages_create_from_a_job_and_show_the_sweep(alice, client_alice, sent_tasks):
    job = finished_job(alice)
    r = client_alice.get(f"/jobs/{job.pk}/")
    assert f"/sweeps/new/?job={job.pk}" in r.content.decode()
    r = client_alice.get(f"/sweeps/new/?job={job.pk}")
    page = r.content.decode()
    assert r.status_code == 200 and "train.learning_rate" in page and "sweep of done" in page
    r = client_alice.post("/sweeps/new/", {"name": "s1", "dataset": str(job.dataset_id), "architecture": "mlp",
                                           "metric": "loss", "budget": "3", "concurrency": "1", "seed": "0",
                                           "pruner": "none", "space": '{"train.learning_rate": {"type": "float", '
                                           '"low": 0.0001, "high": 0.1, "log": true}}',
                                           "model_config": "{}", "train_config": '{"epochs": 1}'})
    assert r.status_code == 302, r.content.decode()[:2000]
    sweep = Sweep.objects.get(name="s1")
    page = client_alice.get(r["Location"]).content.decode()
    assert "trials-table" in page and "parameter importances need at least 3 complete trials" in page
    assert sweep.trials.count() == 1
    bad = client_alice.post("/sweeps/new/", {"dataset": str(job.dataset_id), "architecture": "mlp", "metric": "loss",
                                             "space": "{not json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.content.decode()
    assert client_alice.get("/sweeps/").status_code == 200


@pytest.mark.django_db
def test_the_schema_documents_the_sweep_routes():
    schema = Client().get("/api/schema/?format=json").json()
    for path in ("/api/sweeps/", "/api/sweeps/{id}/", "/api/sweeps/{id}/cancel/", "/api/sweeps/{id}/promote/"):
        assert path in schema["paths"], path
    assert "space" in schema["components"]["schemas"]["SweepCreateRequest"]["properties"]
