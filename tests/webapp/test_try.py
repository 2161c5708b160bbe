"""Try-the-model and notification settings at the web boundary (the worker side runs in
tests/workers/test_inference.py and tests/integration/test_try_model.py)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from tests.webapp.factories import finished_job, running_job
from webapp import celery
from webapp.accounts.models import NotificationSettings
from webapp.accounts.notifications import notify_job_end, validate_webhook_url
from webapp.inference.models import OnnxExport, Prediction
from webapp.jobs.lifecycle import file_sha256, finish_job
from webapp.jobs.models import Artifact


def client(user):
    c = Client()
    c.force_login(user)
    return c


def text_job(owner):
    """A succeeded job whose exported config says it was trained on texts."""
    job = finished_job(owner)
    art = job.directory / "artifacts"
    (art / "config.json").write_text('{"architecture": "transformer", "dataset": {"kind": "text", '
                                     '"task": "classification", "input_shape": [8], "classes": ["a", "b"]}}')
    (art / "model.safetensors").write_bytes(b"x")
    Artifact.objects.filter(job=job).delete()
    for name in ("config.json", "model.safetensors"):
        Artifact.objects.create(job=job, name=name, size_bytes=1, sha256=file_sha256(art / name))
    job.architecture = "transformer"
    job.save()
    return job


@pytest.mark.django_db
def test_try_queues_one_task_and_bad_input_changes_nothing(alice, bob, sent_tasks, django_capture_on_commit_callbacks):
    job = text_job(alice)
    c = client(alice)
    page = c.get(f"/jobs/{job.pk}/try/")
    assert page.status_code == 200 and 'id="try-text"' in page.content.decode()
    r = c.post(f"/jobs/{job.pk}/try/predict/", {"text": "   "})
    assert r.status_code == 400 and r.json()["error"] == "type a text"
    r = c.post(f"/jobs/{job.pk}/try/predict/", {"text": "x" * 20_001})
    assert r.status_code == 400 and "longer than" in r.json()["error"]
    assert not Prediction.objects.exists() and sent_tasks == []
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post(f"/jobs/{job.pk}/try/predict/", {"text": "a fine film", "prompt": "ignored"})
    assert r.status_code == 202
    p = Prediction.objects.get()
    assert p.inputs == {"text": "a fine film"} and p.status == "pending" and p.user == alice
    assert sent_tasks == [(celery.PREDICT_TASK, str(p.pk))]
    assert c.get(f"/jobs/{job.pk}/try/result/", {"id": str(p.pk)}).json()["prediction"]["status"] == "pending"
    assert c.get(f"/jobs/{job.pk}/try/result/", {"id": "nope"}).status_code == 404
    # bob cannot see the job, its page, or alice's try
    b = client(bob)
    assert b.post(f"/jobs/{job.pk}/try/predict/", {"text": "hi"}).status_code == 404
    assert b.get(f"/jobs/{job.pk}/try/result/", {"id": str(p.pk)}).status_code == 404
    assert Prediction.objects.count() == 1


@pytest.mark.django_db
def test_jobs_that_cannot_be_tried_say_why(alice, sent_tasks):
    job = running_job(alice)
    c = client(alice)
    assert "Only a succeeded job" in c.get(f"/jobs/{job.pk}/try/").content.decode()
    r = c.post(f"/jobs/{job.pk}/try/predict/", {"text": "hi"})
    assert r.status_code == 409 and "Only a succeeded job" in r.json()["error"]
    r = c.post(f"/jobs/{job.pk}/onnx/")
    assert r.status_code == 409 and not OnnxExport.objects.exists() and sent_tasks == []


@pytest.mark.django_db
def test_onnx_export_is_queued_once(alice, sent_tasks, django_capture_on_commit_callbacks):
    job = text_job(alice)
    c = client(alice)
    with django_capture_on_commit_callbacks(execute=True):
        assert c.post(f"/jobs/{job.pk}/onnx/").status_code == 202
        assert c.post(f"/jobs/{job.pk}/onnx/").status_code == 202  # already pending: no second task
    assert sent_tasks == [(celery.ONNX_TASK, str(job.pk))]
    assert c.get(f"/jobs/{job.pk}/onnx/").json()["onnx"]["status"] == "pending"
    assert "Exporting to ONNX" in c.get(f"/jobs/{job.pk}/").content.decode()


@pytest.mark.parametrize("url", ["ftp://example.org/x", "javascript:alert(1)", "file:///etc/passwd",
                                 "http://", "https://user:pw@example.org/", "x" * 600])
def test_bad_webhook_urls_are_refused(url):
    with pytest.raises(ValidationError):
        validate_webhook_url(url)


def test_good_webhook_urls():
    assert validate_webhook_url(" https://hooks.example.org/t?x=1 ") == "https://hooks.example.org/t?x=1"
    assert validate_webhook_url("http://8.8.8.8:8080/hook") == "http://8.8.8.8:8080/hook"
    assert validate_webhook_url("") == ""


@pytest.mark.django_db
def test_notification_settings_form(alice):
    c = client(alice)
    r = c.post("/account/notifications/", {"webhook_url": "ftp://x.org/", "email": "on"}, follow=True)
    assert "only http:// and https://" in r.content.decode() and not NotificationSettings.objects.exists()
    r = c.post("/account/notifications/", {"webhook_url": "https://x.org/h", "email": "on"}, follow=True)
    prefs = NotificationSettings.objects.get(user=alice)
    assert prefs.email and prefs.webhook_url == "https://x.org/h"
    assert 'value="https://x.org/h"' in r.content.decode()


@pytest.mark.django_db
def test_job_end_queues_a_notification_only_when_wanted(alice, bob, sent_tasks, django_capture_on_commit_callbacks):
    NotificationSettings.objects.create(user=alice, email=True)
    job_a, job_b = running_job(alice), running_job(bob)
    with django_capture_on_commit_callbacks(execute=True):
        finish_job(job_a.pk, "failed", error="boom")
        finish_job(job_b.pk, "succeeded")
    assert sent_tasks == [(celery.NOTIFY_TASK, str(job_a.pk), "failed")]
    notify_job_end(job_a.pk, "running")  # not an end
    assert len(sent_tasks) == 1


def hf_job(owner, architecture="hf_causal_lm"):
    """A succeeded Hugging Face job with its model.zip."""
    job = finished_job(owner)
    art = job.directory / "artifacts"
    (art / "model.zip").write_bytes(b"PK")
    Artifact.objects.filter(job=job).delete()
    Artifact.objects.create(job=job, name="model.zip", size_bytes=2, sha256=file_sha256(art / "model.zip"))
    job.architecture = architecture
    job.model_config = {"model": "local:gpt", "method": "lora"}
    job.save()
    return job


@pytest.mark.django_db
def test_hugging_face_jobs_are_tried_with_their_own_forms(alice, bob, sent_tasks, django_capture_on_commit_callbacks):
    lm = hf_job(alice)
    c = client(alice)
    page = c.get(f"/jobs/{lm.pk}/try/").content.decode()
    for field in ('id="try-prompt"', 'name="top_p"', 'name="max_new_tokens"', 'name="top_k"', 'name="temperature"'):
        assert field in page
    assert 'id="try-unavailable"' not in page
    assert 'id="try-link"' in c.get(f"/jobs/{lm.pk}/").content.decode()
    r = c.post(f"/jobs/{lm.pk}/try/predict/", {"prompt": "  "})
    assert r.status_code == 400 and r.json()["error"] == "give a prompt" and not Prediction.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post(f"/jobs/{lm.pk}/try/predict/", {"prompt": "Once", "temperature": "0.7", "top_k": "40",
                                                   "top_p": "0.9", "max_new_tokens": "32", "text": "ignored"})
    assert r.status_code == 202
    p = Prediction.objects.get()
    assert p.inputs == {"prompt": "Once", "temperature": "0.7", "top_k": "40", "top_p": "0.9", "max_new_tokens": "32"}
    assert sent_tasks == [(celery.PREDICT_TASK, str(p.pk))]
    assert client(bob).post(f"/jobs/{lm.pk}/try/predict/", {"prompt": "hi"}).status_code == 404  # owner only

    for arch, field in (("hf_text_classification", 'id="try-text"'), ("hf_image_classification", 'id="try-image"')):
        assert field in c.get(f"/jobs/{hf_job(alice, arch).pk}/try/").content.decode()
    # Without its model.zip an HF job cannot be tried.
    running = running_job(alice)
    running.architecture = "hf_causal_lm"
    running.save()
    assert "Only a succeeded job" in c.get(f"/jobs/{running.pk}/try/").content.decode()


@pytest.mark.django_db
def test_streamed_tokens_go_to_the_user_who_asked(alice, monkeypatch):
    from webapp.inference import services

    sent = []
    monkeypatch.setattr(services, "group_send", lambda group, message: sent.append((group, message)))
    p = Prediction.objects.create(job=hf_job(alice), user=alice, inputs={"prompt": "x"})
    services.push_tokens(p, 3, "abc")
    assert sent == [(f"user.{alice.pk}", {"type": "inference.update", "what": "prediction_tokens",
                                           "payload": {"id": str(p.pk), "offset": 3, "text": "abc"}})]


@pytest.mark.django_db
def test_the_api_tries_a_hugging_face_lm_with_its_sampling_options(alice, sent_tasks, django_capture_on_commit_callbacks):
    from tests.webapp.factories import api_token

    job = hf_job(alice)
    c = Client(HTTP_AUTHORIZATION=f"Token {api_token(alice)}")
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post(f"/api/jobs/{job.pk}/predictions/", {"prompt": "Once", "top_p": 0.8, "max_new_tokens": 16},
                   content_type="application/json")
    assert r.status_code == 202, r.content
    assert Prediction.objects.get().inputs == {"prompt": "Once", "top_p": "0.8", "max_new_tokens": "16"}
    r = c.post(f"/api/jobs/{job.pk}/predictions/", {"prompt": "x", "top_p": 2}, content_type="application/json")
    assert r.status_code == 400
