"""Onboarding: the getting-started panel of an empty installation, the sample datasets (one of
every kind, generated offline, ingested by the real ingest code), the guided first job, and the
new-job form without a dataset."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from models_zoo import kinds
from tests.webapp.factories import ready_dataset, running_job
from webapp.celery import INGEST_TASK
from webapp.datasets import samples
from webapp.datasets.models import Dataset
from webapp.jobs import services
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


def test_a_sample_of_every_kind_small_and_the_same_bytes_every_time():
    assert set(samples.SAMPLES) == set(kinds.KINDS) == {"tabular", "image", "text", "corpus", "sequence", "chat"}
    for s in samples.SAMPLES.values():
        data = s.make()
        assert 10_000 < len(data) < 400_000, (s.kind, len(data))
        assert data == s.make(), s.kind  # deterministic
        assert s.filename.startswith(samples.PREFIX)
        assert kinds.get(s.kind).extensions and any(s.filename.endswith(e) for e in kinds.get(s.kind).extensions)


@pytest.mark.parametrize("kind", sorted(samples.SAMPLES))
def test_each_sample_ingests_and_its_guided_job_is_valid(kind, alice, tmp_path):
    """The real ingest code (the worker's) accepts each sample; the first job's settings pass the
    same validation as a submitted job, against the ingested dataset's info."""
    from workers.datasets import ingest

    s = samples.SAMPLES[kind]
    src = tmp_path / s.filename
    src.write_bytes(s.make())
    info = ingest(kind, src, tmp_path / "out", kinds.form_options(kind, {}))
    assert info["kind"] == kind
    if kind in ("tabular", "image", "text", "sequence"):
        assert info["task"] == "classification" and info["num_classes"] in (2, 3)
    if s.architecture is None:
        assert kind == "chat" and "Models" in s.guide  # explained instead: it needs a pretrained LM
        return
    ds = Dataset.objects.create(owner=alice, name=s.name, kind=kind, original_filename=s.filename, size_bytes=1,
                                status=Dataset.Status.READY, info=info)
    model, train = services.validate_job_request(ds, s.architecture, s.model_config, s.train_config)
    assert train["epochs"] == s.train_config["epochs"]


def test_an_empty_installation_shows_what_to_do(client_alice):
    for url in ("/jobs/", "/datasets/"):
        html = client_alice.get(url).content.decode()
        assert 'id="getting-started"' in html and 'id="add-samples"' in html, url
        assert 'id="no-worker"' in html  # and that no worker is online yet
    assert client_alice.get("/", follow=True).content.decode().count('id="getting-started"') == 1


def test_add_samples_is_one_click_through_the_upload_path_and_once(client_alice, alice, sent_tasks,
                                                                  django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        r = client_alice.post("/datasets/samples/")
    assert r.status_code == 302 and r["Location"] == "/datasets/"
    rows = Dataset.objects.filter(owner=alice)
    assert sorted(rows.values_list("kind", flat=True)) == sorted(kinds.KINDS)
    for d in rows:
        assert d.status == "ingesting", d.kind
        assert d.upload_path.read_bytes() == samples.SAMPLES[d.kind].make(), d.kind
    assert sorted(sent_tasks) == sorted((INGEST_TASK, str(d.pk)) for d in rows)
    html = client_alice.get("/datasets/").content.decode()
    assert "checking it now" in html and "js/onboarding.js" in html and 'id="add-samples"' not in html
    with django_capture_on_commit_callbacks(execute=True):
        client_alice.post("/datasets/samples/")
    assert Dataset.objects.filter(owner=alice).count() == 6  # each once
    assert client_alice.get("/datasets/samples/").status_code == 405


def test_samples_count_against_the_quota_and_a_refusal_keeps_nothing(client_alice, alice, settings, sent_tasks):
    settings.TRAINYARD_USER_QUOTA_MB = 0
    r = client_alice.post("/datasets/samples/", follow=True)
    assert "Could not add the sample datasets" in r.content.decode() and "quota" in r.content.decode()
    assert not Dataset.objects.filter(owner=alice).exists() and sent_tasks == []


@pytest.mark.django_db(transaction=True)
def test_two_clicks_at_once_add_each_sample_once(alice, settings):
    if connection.vendor == "sqlite" and "memory" in str(connection.settings_dict["NAME"]):
        pytest.skip("an in-memory SQLite database is not shared between threads")
    settings.CELERY_TASK_ALWAYS_EAGER = False
    import webapp.celery

    sends = []
    original = webapp.celery.send
    webapp.celery.send = lambda name, *args, queue=None: sends.append(args)
    errors = []

    def click():
        try:
            samples.add_samples(alice)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    try:
        threads = [threading.Thread(target=click) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        webapp.celery.send = original
    assert not errors
    assert sorted(Dataset.objects.filter(owner=alice).values_list("kind", flat=True)) == sorted(kinds.KINDS)


def _sample_dataset(owner, kind="tabular"):
    s = samples.SAMPLES[kind]
    ds = ready_dataset(owner, name=s.name)
    Dataset.objects.filter(pk=ds.pk).update(original_filename=s.filename, kind=kind)
    ds.refresh_from_db()
    return ds


def test_the_guided_first_job_is_one_click_from_a_sample(client_alice, alice, bob, sent_tasks):
    ds = _sample_dataset(alice)
    html = client_alice.get("/jobs/").content.decode()
    assert f'action="/datasets/{ds.pk}/first-job/"' in html and "Train a first model" in html
    r = client_alice.post(f"/datasets/{ds.pk}/first-job/")
    job = Job.objects.get(owner=alice)
    assert r.status_code == 302 and r["Location"] == f"/jobs/{job.pk}/"
    s = samples.SAMPLES["tabular"]
    assert job.architecture == s.architecture and job.train_config["epochs"] == s.train_config["epochs"]
    assert job.model_config["hidden_sizes"] == s.model_config["hidden_sizes"]
    assert 'id="getting-started"' not in client_alice.get("/jobs/").content.decode()  # it has a job now
    # Another user gets 404; a dataset that is not a sample has no guided job.
    b = Client()
    b.force_login(bob)
    assert b.post(f"/datasets/{ds.pk}/first-job/").status_code == 404
    other = ready_dataset(alice, name="mine")
    r = client_alice.post(f"/datasets/{other.pk}/first-job/")
    assert r.status_code == 302 and r["Location"] == f"/jobs/new/?dataset={other.pk}"
    assert Job.objects.count() == 1


def test_no_panel_once_the_user_has_a_job(client_alice, alice):
    running_job(alice)
    assert 'id="getting-started"' not in client_alice.get("/jobs/").content.decode()
    assert 'id="getting-started"' not in client_alice.get("/datasets/").content.decode()


def test_the_new_job_form_has_no_active_queue_button_without_a_dataset(client_alice, alice):
    html = client_alice.get("/jobs/new/").content.decode()
    assert '<button type="submit" disabled aria-describedby="no-dataset">Queue job</button>' in html
    assert 'href="/datasets/#upload-form"' in html and 'action="/datasets/samples/"' in html
    ready_dataset(alice)
    html = client_alice.get("/jobs/new/").content.decode()
    assert '<button type="submit">Queue job</button>' in html and 'id="no-dataset"' not in html
