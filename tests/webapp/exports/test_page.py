"""The job page's Export section: the TensorBoard link, and the MLflow form once the job ended."""

from __future__ import annotations

import re

from tests.webapp.factories import running_job


def _tag(html: str, element_id: str) -> str:
    return re.search(rf'<[a-z]+ id="{element_id}"[^>]*>', html)[0]


def test_the_job_page_offers_both_exports(client_alice, job, settings, tmp_path):
    html = client_alice.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="/api/jobs/{job.pk}/exports/tensorboard/"' in html
    assert f'data-url="/api/jobs/{job.pk}/exports/mlflow/"' in html
    assert " hidden" not in _tag(html, "mlflow-form") and " hidden" in _tag(html, "mlflow-wait")
    assert "js/mlflow_export.js" in html
    assert "a folder on this server" not in html  # no file root: no file: URIs offered
    settings.TRAINYARD_MLFLOW_FILE_ROOT = str(tmp_path)
    html = client_alice.get(f"/jobs/{job.pk}/").content.decode()
    assert f"a folder on this server under <code>{tmp_path.as_uri()}/</code>" in html


def test_a_running_job_shows_the_form_only_when_it_ends(client_alice, alice):
    html = client_alice.get(f"/jobs/{running_job(alice).pk}/").content.decode()
    assert " hidden" in _tag(html, "mlflow-form")  # job.js shows it when the job ends
    assert " hidden" not in _tag(html, "mlflow-wait")


def test_another_users_job_page_is_404(client_bob, job):
    assert client_bob.get(f"/jobs/{job.pk}/").status_code == 404


def test_the_pages_post_is_a_session_request_with_the_csrf_header(alice, job, settings, tmp_path, sent_tasks,
                                                                  django_capture_on_commit_callbacks):
    import json

    from django.test import Client

    settings.TRAINYARD_MLFLOW_FILE_ROOT = str(tmp_path)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    browser.get(f"/jobs/{job.pk}/")  # sets the CSRF cookie, as the page does
    body = json.dumps({"tracking_uri": tmp_path.as_uri(), "experiment": "", "register_model": False,
                       "model_name": ""})
    url = f"/api/jobs/{job.pk}/exports/mlflow/"
    assert browser.post(url, data=body, content_type="application/json").status_code == 403  # no token
    with django_capture_on_commit_callbacks(execute=True):
        r = browser.post(url, data=body, content_type="application/json",
                         HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value)
    assert r.status_code == 202 and r.json()["experiment"] == "trainyard"
    assert len(sent_tasks) == 1
