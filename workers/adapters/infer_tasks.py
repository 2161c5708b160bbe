"""Short tasks on the `infer` queue: try-the-model, try many, ONNX export, job-end notifications.

The worker process keeps the last few loaded models (`workers.serving.predict`'s LRU), so repeated
tries of one job skip loading it.
"""

from __future__ import annotations

import logging
import time

from webapp.celery import BATCH_PREDICT_TASK, NOTIFY_TASK, ONNX_TASK, PREDICT_TASK, app

log = logging.getLogger(__name__)


# A language model's answer of up to MAX_GENERATE tokens on a CPU worker takes more than a minute.
@app.task(name=PREDICT_TASK, soft_time_limit=180, time_limit=240)
def predict(prediction_id: str) -> str:
    from webapp.inference.models import Prediction
    from webapp.inference.services import finish_prediction
    from workers.serving.predict import InputError, predict as run

    p = Prediction.objects.select_related("job").filter(pk=prediction_id, status=Prediction.Status.PENDING).first()
    if p is None:
        return "gone"
    started = time.perf_counter()
    try:
        image = p.image_path.read_bytes() if p.image_name else None
        if p.job.architecture.startswith("hf_"):
            result = _predict_hf(p, image)
        else:
            result = run(p.job.directory / "artifacts", p.inputs, image)
    except InputError as exc:
        finish_prediction(p.pk, error=str(exc), seconds=time.perf_counter() - started)
        return "bad input"
    except Exception as exc:  # noqa: BLE001 - any failure becomes the try's readable error
        log.exception("prediction %s failed", prediction_id)
        finish_prediction(p.pk, error=f"the model could not run: {type(exc).__name__}: {str(exc)[:300]}",
                          seconds=time.perf_counter() - started)
        return "failed"
    finish_prediction(p.pk, result=result, seconds=time.perf_counter() - started)
    return "done"


def _predict_hf(p, image: bytes | None) -> dict:
    """A fine-tuned Hugging Face model: its model.zip (or the adapter on its base), the answer of a
    language model pushed to the user's socket while it is generated."""
    from models_zoo.hf import TASKS
    from webapp.hub.services import local_path
    from webapp.inference.services import push_tokens
    from workers.hf.source import ModelSourceError, resolve
    from workers.serving.hf_predict import InputError, predict as run_hf

    job = p.job
    model = job.model_config.get("model", "")
    info = (job.dataset.info if job.dataset_id and job.dataset else {}) or {}

    def base():
        try:
            return resolve(model, local_path(job.owner, model))[0]
        except ModelSourceError as exc:
            raise InputError(f"the adapter's base model cannot be loaded: {exc}") from None

    return run_hf(job.directory / "artifacts", TASKS[job.architecture], p.inputs, image, base=base, info=info,
                  max_length=int(job.model_config.get("max_length") or 512), chat=info.get("kind") == "chat",
                  on_text=lambda offset, text: push_tokens(p, offset, text))


# A try-many file of up to 100,000 inputs; the row shows the progress as it goes.
@app.task(name=BATCH_PREDICT_TASK, soft_time_limit=1800, time_limit=1900)
def predict_batch(batch_id: str) -> str:
    from webapp.inference.services import batch_progress, claim_batch, finish_batch
    from workers.serving.batch import predict_file
    from workers.serving.predict import InputError

    b = claim_batch(batch_id)
    if b is None:
        return "gone"
    started = time.perf_counter()
    try:
        result = predict_file(b.job.directory / "artifacts", b.input_path, b.output_path,
                              progress=lambda done, total: batch_progress(b.pk, done, total))
    except InputError as exc:
        finish_batch(b.pk, error=str(exc), seconds=time.perf_counter() - started)
        return "bad input"
    except Exception as exc:  # noqa: BLE001 - any failure becomes the batch's readable error
        log.exception("batch prediction %s failed", batch_id)
        finish_batch(b.pk, error=f"the model could not run: {type(exc).__name__}: {str(exc)[:300]}",
                     seconds=time.perf_counter() - started)
        return "failed"
    finish_batch(b.pk, rows=result["rows"], failed=result["failed"], problems=result["problems"],
                 seconds=time.perf_counter() - started)
    return "done"


@app.task(name=ONNX_TASK, soft_time_limit=300, time_limit=360)
def export_onnx(job_id: str) -> str:
    from webapp.inference.models import OnnxExport
    from webapp.inference.services import finish_onnx_export
    from webapp.jobs.models import Job
    from workers.serving.onnx_export import ExportError, export

    if not OnnxExport.objects.filter(job_id=job_id, status=OnnxExport.Status.PENDING).exists():
        return "gone"
    try:
        meta = export(Job(pk=job_id).directory / "artifacts")
    except ExportError as exc:
        finish_onnx_export(job_id, error=str(exc))
        return "failed"
    except Exception as exc:  # noqa: BLE001
        log.exception("ONNX export of job %s failed", job_id)
        finish_onnx_export(job_id, error=f"{type(exc).__name__}: {str(exc)[:500]}")
        return "failed"
    finish_onnx_export(job_id, meta=meta)
    return "done"


@app.task(name=NOTIFY_TASK, bind=True, max_retries=None, soft_time_limit=60, time_limit=90)
def notify_job(self, job_id: str, status: str, attempt: int = 0, email_done: bool = False) -> str:
    """E-mail once, then POST the signed webhook with retries (back-off 2, 4, 8... s, at most
    TRAINYARD_WEBHOOK_RETRIES more tries); the outcome is shown on the profile page. Runs on
    the `notify` queue: a slow receiver (cut at TRAINYARD_WEBHOOK_TIMEOUT in all) never holds
    up try-the-model or ONNX exports."""
    from django.conf import settings

    from webapp.accounts import notifications
    from webapp.accounts.models import NotificationSettings
    from webapp.jobs.models import Job

    job = Job.objects.select_related("owner", "dataset").filter(pk=job_id).first()
    prefs = NotificationSettings.objects.filter(user_id=job.owner_id).first() if job else None
    if job is None or prefs is None or job.status != status:
        return "gone"
    if prefs.email and job.owner.email and not email_done:
        try:
            notifications.send_email(job)
        except Exception as exc:  # noqa: BLE001 - SMTP trouble must not stop the webhook
            log.warning("e-mail for job %s failed: %s", job_id, exc)
        email_done = True
    if not prefs.webhook_url:
        return "sent"
    try:
        code = notifications.post_webhook(prefs.webhook_url, job, prefs.webhook_secret)
        result = f"job {job.name!r} {status}: delivered (HTTP {code})"
    except notifications.WebhookError as exc:
        if attempt < settings.TRAINYARD_WEBHOOK_RETRIES:
            NotificationSettings.objects.filter(pk=prefs.pk).update(
                last_webhook=f"job {job.name!r} {status}: try {attempt + 1} failed ({exc}); retrying"[:300])
            raise self.retry(args=[job_id, status, attempt + 1, email_done], countdown=2 ** (attempt + 1))
        result = f"job {job.name!r} {status}: not delivered after {attempt + 1} tries ({exc})"
    except notifications.WebhookRefused as exc:
        result = f"job {job.name!r} {status}: not sent: {exc}"
    except ValueError as exc:
        result = f"job {job.name!r} {status}: refused by the receiver ({exc})"
    NotificationSettings.objects.filter(pk=prefs.pk).update(last_webhook=result[:300])
    return result
