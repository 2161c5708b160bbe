"""A run's warnings about its model (a collapsed classifier, a loss that never moved) are kept on
the job: in the API, on the job page, on the final status event and in the notification."""

from __future__ import annotations

import pytest

from tests.webapp.factories import api_token, ready_dataset
from webapp.jobs.models import Job, JobEvent

WARNING = {"code": "one_class", "text": "every validation prediction is class 'a' (2 rows): the classifier collapsed"}


@pytest.mark.django_db
def test_the_warnings_of_a_finished_run_reach_the_api_the_page_the_event_and_the_notification(alice, client_alice):
    from django.test import Client

    from webapp.accounts.notifications import payload
    from webapp.jobs.lifecycle import finish_job

    job = Job.objects.create(owner=alice, dataset=ready_dataset(alice), name="j", architecture="mlp",
                             status=Job.Status.RUNNING)
    finish_job(job.pk, "succeeded", metrics={"accuracy": 0.5}, warnings=[WARNING])
    job.refresh_from_db()
    assert job.warnings == [WARNING]
    api = Client()
    api.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(alice)}"
    assert api.get(f"/api/jobs/{job.pk}/").json()["warnings"] == [WARNING]
    page = client_alice.get(f"/jobs/{job.pk}/").content.decode()
    assert "Warnings about this model" in page and "the classifier collapsed" in page
    assert 'id="warnings-card" hidden' not in page
    last = JobEvent.objects.filter(job=job).order_by("-seq").first()
    assert last.kind == "status" and last.data["warnings"] == [WARNING]
    assert payload(job)["job"]["warnings"] == [WARNING]

    clean = Job.objects.create(owner=alice, dataset=job.dataset, name="k", architecture="mlp",
                               status=Job.Status.RUNNING, warnings=[WARNING])  # a retried job's old ones go
    finish_job(clean.pk, "succeeded", metrics={"accuracy": 0.9})
    clean.refresh_from_db()
    assert clean.warnings == []
    assert 'id="warnings-card" hidden' in client_alice.get(f"/jobs/{clean.pk}/").content.decode()
