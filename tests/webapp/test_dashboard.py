"""Jobs list (filters, search, the JSON rows behind its live refresh) and the job page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.webapp.factories import finished_job, ready_dataset, running_job
from webapp.jobs.events import append_events
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


def _client(user):
    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def client_alice(alice):
    return _client(alice)


@pytest.fixture
def client_bob(bob):
    return _client(bob)


def _rows(client, **params):
    r = client.get("/jobs/", {"format": "json", **params})
    assert r.status_code == 200 and r["Content-Type"].startswith("application/json")
    return {row["name"]: row for row in r.json()["jobs"]}


@pytest.fixture
def jobs(alice, bob):
    ds_a, ds_b = ready_dataset(alice, "flowers"), ready_dataset(alice, "houses")
    done = finished_job(alice, ds_a)
    done.metrics = {"accuracy": 0.93, "loss": 0.2}
    done.started_at = timezone.now() - timedelta(seconds=90)
    done.finished_at = done.started_at + timedelta(seconds=61)
    done.save()
    run = running_job(alice, ds_b)
    Job.objects.filter(pk=run.pk).update(worker_name="gpu0@box", step=50, total_steps=200, epoch=1,
                                         eta_seconds=30.0, started_at=timezone.now() - timedelta(seconds=10))
    append_events(run.pk, [("metric", {"split": "val", "step": 10, "epoch": 1, "values": {"loss": 0.9, "accuracy": 0.6}}),
                           ("metric", {"split": "val", "step": 20, "epoch": 2, "values": {"loss": 0.7, "accuracy": 0.8}}),
                           ("metric", {"split": "val", "step": 30, "epoch": 3, "values": {"loss": 0.8, "accuracy": 0.7}})])
    other = Job.objects.create(owner=bob, dataset=ready_dataset(bob, "bobs"), name="bob's", architecture="cnn")
    q1 = Job.objects.create(owner=alice, dataset=ds_a, name="waiting-1", architecture="cnn")
    q2 = Job.objects.create(owner=alice, dataset=ds_a, name="waiting-2", architecture="cnn")
    return {"done": done, "run": run, "other": other, "q1": q1, "q2": q2}


def test_list_rows_tell_status_queue_worker_progress_best_duration(client_alice, jobs):
    rows = _rows(client_alice)
    assert set(rows) == {"done", "running", "waiting-1", "waiting-2"}  # never bob's job
    assert rows["running"]["worker"] == "gpu0@box" and rows["running"]["progress"] == 0.25
    assert rows["running"]["eta_seconds"] == 30.0
    assert rows["running"]["best_metric"] == "accuracy" and rows["running"]["best_value"] == 0.8  # best, not last
    assert rows["done"]["best_value"] == 0.93 and rows["done"]["duration_seconds"] == 61.0
    assert rows["done"]["progress"] == 1.0
    # Queue position counts every queued job ahead (bob's was queued first).
    assert rows["waiting-1"]["queue_position"] == 1 and rows["waiting-2"]["queue_position"] == 2
    html = client_alice.get("/jobs/").content.decode()
    assert "waiting for a worker, 2 jobs ahead in the queue" in html and "gpu0@box" in html and "accuracy 0.9300" in html


def test_list_filters_and_search(client_alice, jobs):
    assert set(_rows(client_alice, status="queued")) == {"waiting-1", "waiting-2"}
    assert set(_rows(client_alice, architecture="mlp")) == {"done", "running"}
    assert set(_rows(client_alice, dataset=str(jobs["run"].dataset_id))) == {"running"}
    assert set(_rows(client_alice, q="WAIT")) == {"waiting-1", "waiting-2"}
    assert set(_rows(client_alice, q="houses")) == {"running"}  # dataset name
    assert set(_rows(client_alice, q="gpu0")) == {"running"}  # worker
    assert set(_rows(client_alice, q="bob")) == set()  # another user's job stays invisible
    assert set(_rows(client_alice, status="bogus", dataset="not-a-uuid")) == set(_rows(client_alice))
    html = client_alice.get("/jobs/", {"status": "queued"}).content.decode()
    assert "waiting-1" in html and "houses" in html  # the dataset filter offers all of alice's datasets
    assert 'value="queued" selected' in html
    assert "No jobs match these filters." in client_alice.get("/jobs/", {"q": "zzz"}).content.decode()


def test_staff_see_everyones_jobs_with_owner(staff, jobs):
    c = _client(staff)
    rows = _rows(c)
    assert "bob's" in rows and rows["bob's"]["owner"] == "bob"
    assert set(_rows(c, q="bob")) == {"bob's"}
    assert "<th>Owner</th>" in c.get("/jobs/").content.decode()


def test_job_page_has_charts_controls_gallery_log_and_actions(client_alice, jobs):
    html = client_alice.get(f"/jobs/{jobs['run'].pk}/").content.decode()
    for needle in ['id="chart-loss"', 'id="chart-metric"', 'id="chart-lr"', 'id="chart-speed"', 'id="smoothing"',
                   'id="log-loss"', 'id="metric-select"', 'id="samples"', 'id="confusion"', 'id="log"',
                   'id="cancel-button"', 'id="clone-link"', 'data-monitor="accuracy"', 'data-mode="max"']:
        assert needle in html, needle
    html = client_alice.get(f"/jobs/{jobs['done'].pk}/").content.decode()
    assert 'id="delete-form"' in html and 'id="cancel-form"' in html


def test_other_users_get_404_on_job_page_and_nothing_in_json(client_bob, jobs):
    assert client_bob.get(f"/jobs/{jobs['run'].pk}/").status_code == 404
    assert set(_rows(client_bob)) == {"bob's"}


def test_compare_marks_the_settings_that_differ(client_alice, jobs):
    done, run = jobs["done"], jobs["run"]
    Job.objects.filter(pk=run.pk).update(train_config={"epochs": 1, "seed": 3})
    Job.objects.filter(pk=done.pk).update(train_config={"epochs": 1, "seed": 4})
    r = client_alice.get(f"/jobs/compare/?ids={done.pk}&ids={run.pk}")
    rows = {row["name"]: row for row in r.context["rows"]}
    assert rows["seed"]["differs"] is True and rows["epochs"]["differs"] is False
    html = r.content.decode()
    assert '<tr class="differs"><th>seed</th>' in html and 'class="swatch" data-index="1"' in html
