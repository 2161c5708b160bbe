"""Job-end notifications by e-mail and webhook (the in-page toast is static/js/notify.js).

`notify_job_end()` runs after the commit that ended a job and only queues a task (when the owner
asked for something); the worker task calls `send_email()` / `post_webhook()`, so no request or
training thread ever waits on SMTP or a slow webhook.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import URLValidator

from webapp import celery
from webapp.accounts.webhooks import WebhookError, WebhookRefused, deliver, signature_headers, vetted_address

__all__ = ["WebhookError", "WebhookRefused", "notify_job_end", "post_webhook", "send_email",
           "validate_webhook_url"]

log = logging.getLogger(__name__)

FINAL = {"succeeded": "finished", "failed": "failed", "cancelled": "was cancelled"}


def validate_webhook_url(url: str) -> str:
    """A clean http(s) URL, or ValidationError with the reason."""
    url = (url or "").strip()
    if not url:
        return ""
    if len(url) > 500:
        raise ValidationError("the URL is longer than 500 characters")
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise ValidationError("only http:// and https:// URLs can receive webhooks")
    URLValidator(schemes=["http", "https"])(url)
    if urlsplit(url).username or urlsplit(url).password:
        raise ValidationError("put no user name or password in the URL")
    try:
        vetted_address(url, must_resolve=False)  # checked again at every delivery (DNS rebinding)
    except (WebhookRefused, WebhookError) as exc:
        raise ValidationError(str(exc)) from None
    return url


def notify_job_end(job_id, status: str) -> None:
    """Queue the notification task if the job's owner wants one (called after commit)."""
    from webapp.accounts.models import NotificationSettings
    from webapp.jobs.models import Job

    if status not in FINAL:
        return
    owner_id = Job.objects.filter(pk=job_id).values_list("owner_id", flat=True).first()
    prefs = NotificationSettings.objects.select_related("user").filter(user_id=owner_id).first()
    if prefs is None or not prefs.wanted:
        return
    try:
        celery.send(celery.NOTIFY_TASK, str(job_id), status)
    except Exception as exc:  # noqa: BLE001 - a lost notification must not break finishing a job
        log.error("could not queue the notification for job %s: %s", job_id, exc)


def payload(job) -> dict:
    return {
        "event": f"job.{job.status}",
        "job": {"id": str(job.pk), "name": job.name, "status": job.status, "error": job.error,
                "architecture": job.architecture, "dataset": job.dataset.name if job.dataset_id else None,
                "metrics": job.metrics, "warnings": job.warnings, "finished_at": job.finished_at.isoformat() if job.finished_at else None,
                "url": f"{settings.TRAINYARD_BASE_URL.rstrip('/')}/jobs/{job.pk}/"},
        "owner": job.owner.get_username(),
    }


def send_email(job) -> None:
    body = payload(job)
    lines = [f"Your job “{job.name}” {FINAL[job.status]}.", ""]
    if job.error:
        lines += [f"Error: {job.error[:2000]}", ""]
    if job.warnings:
        lines += [*(f"Warning: {w.get('text', '')}" for w in job.warnings), ""]
    lines += [f"{k}: {v:.6g}" for k, v in (job.metrics or {}).items() if isinstance(v, (int, float))]
    lines += ["", body["job"]["url"]]
    send_mail(f"[Trainyard] {job.name} {FINAL[job.status]}", "\n".join(lines), settings.DEFAULT_FROM_EMAIL,
              [job.owner.email], fail_silently=False)


def message_id(job) -> str:
    """The Standard Webhooks `webhook-id` of a job's end: the same on every retry of it."""
    when = int(job.finished_at.timestamp() * 1000) if job.finished_at else 0
    return f"msg_{job.pk.hex}_{job.status}_{when}"


def post_webhook(url: str, job, secret: str = "") -> int:
    """POST the job's JSON, signed with the owner's secret; returns the HTTP status.

    WebhookRefused (the address is internal) and other 4xx but 429 are final (ValueError);
    WebhookError may succeed if tried again."""
    body = json.dumps(payload(job))
    headers = signature_headers(secret, message_id(job), body) if secret else {}
    return deliver(url, body, headers)
