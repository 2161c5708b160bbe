"""Try many at the web boundary: the file is checked and stored, one task is queued on commit,
limits hold under parallel requests, only the user who asked sees the batch and its CSV, and
the worker's outcome is recorded once (the worker side: tests/workers/test_batch_predict.py and
tests/integration/test_try_many.py)."""

from __future__ import annotations

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client

from tests.webapp.test_try import text_job
from webapp import celery
from webapp.inference import services
from webapp.inference.models import BatchPrediction

pytestmark = pytest.mark.django_db


def client(user):
    c = Client()
    c.force_login(user)
    return c


def _post(c, job, name="many.csv", data=b"text\nhello\n"):
    return c.post(f"/jobs/{job.pk}/try/batch/", {"file": SimpleUploadedFile(name, data)})


def test_a_file_is_stored_queued_once_and_followed(alice, sent_tasks, django_capture_on_commit_callbacks):
    job = text_job(alice)
    c = client(alice)
    page = c.get(f"/jobs/{job.pk}/try/").content.decode()
    assert 'id="batch-form"' in page and 'accept=".csv,.tsv,.tab,.jsonl,.ndjson,.json"' in page
    with django_capture_on_commit_callbacks(execute=True):
        r = _post(c, job)
    assert r.status_code == 202, r.content
    b = BatchPrediction.objects.get()
    assert sent_tasks == [(celery.BATCH_PREDICT_TASK, str(b.pk))]
    assert b.input_path.read_bytes() == b"text\nhello\n" and b.input_path.name.endswith(".in.csv")
    status = c.get(f"/jobs/{job.pk}/try/batch/{b.pk}/").json()["batch"]
    assert status["status"] == "pending" and status["download"] is None
    assert c.get(f"/jobs/{job.pk}/try/batch/{b.pk}/download/").status_code == 404  # not done yet
    # The worker's side: claimed once, progress, the CSV, recorded once.
    assert services.claim_batch(b.pk) is not None and services.claim_batch(b.pk) is None
    services.batch_progress(b.pk, 1, 2)
    assert c.get(f"/jobs/{job.pk}/try/batch/{b.pk}/").json()["batch"]["rows_done"] == 1
    b.output_path.write_text("line,prediction,confidence,error\nline 2,a,0.9,\n")
    services.finish_batch(b.pk, rows=1, seconds=0.1)
    services.finish_batch(b.pk, error="a second finish changes nothing")
    b.refresh_from_db()
    assert b.status == "done" and not b.input_path.exists() and b.error == ""
    r = c.get(f"/jobs/{job.pk}/try/batch/{b.pk}/download/")
    assert r.status_code == 200 and r["X-Content-Type-Options"] == "nosniff"
    assert "attachment" in r["Content-Disposition"] and "many-predictions.csv" in r["Content-Disposition"]
    assert b"".join(r.streaming_content).startswith(b"line,prediction")
    assert "download CSV" in c.get(f"/jobs/{job.pk}/try/").content.decode()


def test_bad_files_are_refused_and_nothing_is_stored(alice, sent_tasks, settings):
    job = text_job(alice)
    c = client(alice)
    assert "choose a file" in c.post(f"/jobs/{job.pk}/try/batch/").json()["error"]
    assert "reads .csv, .tsv" in _post(c, job, name="many.zip").json()["error"]
    assert _post(c, job, data=b"").json()["error"] == "the file is empty"
    settings.TRAINYARD_MAX_BATCH_MB = 1
    r = _post(c, job, data=b"text\n" + b"x" * (1024 * 1024))
    assert r.status_code == 413 and "TRAINYARD_MAX_BATCH_MB" in r.json()["error"]
    assert not BatchPrediction.objects.exists() and sent_tasks == []


def test_the_quota_counts_the_files(alice, sent_tasks, settings):
    from webapp.accounts import storage

    job = text_job(alice)
    before = storage.usage_bytes(alice)["tries"]
    assert _post(client(alice), job, data=b"text\n" + b"y" * 5000).status_code == 202
    assert storage.usage_bytes(alice)["tries"] == before + 5005


def test_only_the_user_who_asked_sees_a_batch_not_even_staff(alice, bob, staff, sent_tasks):
    job = text_job(alice)
    _post(client(alice), job)
    b = BatchPrediction.objects.get()
    b.status = "done"
    b.save()
    b.output_path.parent.mkdir(parents=True, exist_ok=True)
    b.output_path.write_text("x\n")
    for user in (bob, staff):
        c = client(user)
        assert c.get(f"/jobs/{job.pk}/try/batch/{b.pk}/").status_code == 404
        assert c.get(f"/jobs/{job.pk}/try/batch/{b.pk}/download/").status_code == 404
    assert _post(client(bob), job).status_code == 404  # bob may not see the job at all
    assert BatchPrediction.objects.count() == 1


def test_an_hf_or_unfinished_job_offers_no_try_many(alice):
    from tests.webapp.factories import running_job

    job = running_job(alice)
    assert _post(client(alice), job).status_code == 409


@pytest.mark.django_db(transaction=True)
def test_parallel_requests_accept_exactly_the_active_limit(alice, sent_tasks, settings):
    settings.TRAINYARD_MAX_ACTIVE_BATCHES = 2
    job = text_job(alice)
    codes = []

    def one():
        try:
            codes.append(_post(client(alice), job).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [202, 202, 429, 429, 429, 429]
    assert BatchPrediction.objects.count() == 2
