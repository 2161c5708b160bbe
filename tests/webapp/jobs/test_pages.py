"""The jobs pages: the new-job form, cancel/delete/download, clone, compare, the queue.

Split from tests/webapp/test_pages.py so the tests mirror the packages."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from webapp.celery import TRAIN_TASK
from webapp.datasets.models import Dataset, IngestFailure
from webapp.jobs.models import Job, JobEvent
from tests.webapp.factories import finished_job, ready_dataset, running_job
from tests.webapp.leftovers import leftover_uploads

pytestmark = pytest.mark.django_db


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
    # The settings the form left out got the adaptive defaults, which the job's log names.
    assert list(JobEvent.objects.filter(job=job).values_list("seq", "kind")) == [(1, "status"), (2, "log")]


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
    assert "1 job ahead in the queue" in client_alice.get("/jobs/").content.decode()
    api = Client()
    api.force_login(alice)
    assert api.get(f"/api/jobs/{mine.pk}/").json()["queue_position"] == 1
    Job.objects.filter(pk=first.pk).update(status="running")
    assert api.get(f"/api/jobs/{mine.pk}/").json()["queue_position"] == 0
