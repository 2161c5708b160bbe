"""Job-end notifications by e-mail and webhook (the in-page toast is static/js/notify.js).

`notify_job_end()` runs after the commit that ended a job and only queues a task (when the owner
asked for something); the worker task calls `send_email()` / `post_webhook()`, so no request or
training thread ever waits on SMTP or a slow webhook.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import URLValidator

from webapp import celery

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
                "metrics": job.metrics, "finished_at": job.finished_at.isoformat() if job.finished_at else None,
                "url": f"{settings.TRAINYARD_BASE_URL.rstrip('/')}/jobs/{job.pk}/"},
        "owner": job.owner.get_username(),
    }


def send_email(job) -> None:
    body = payload(job)
    lines = [f"Your job “{job.name}” {FINAL[job.status]}.", ""]
    if job.error:
        lines += [f"Error: {job.error[:2000]}", ""]
    lines += [f"{k}: {v:.6g}" for k, v in (job.metrics or {}).items() if isinstance(v, (int, float))]
    lines += ["", body["job"]["url"]]
    send_mail(f"[Trainyard] {job.name} {FINAL[job.status]}", "\n".join(lines), settings.DEFAULT_FROM_EMAIL,
              [job.owner.email], fail_silently=False)


class WebhookError(Exception):
    """A delivery that may succeed if tried again (timeout, connection refused, HTTP 5xx/429)."""


def post_webhook(url: str, job) -> int:
    """POST the job's JSON; returns the HTTP status. 4xx other than 429 is final (ValueError)."""
    data = json.dumps(payload(job)).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "Trainyard-webhook/1"})
    # Redirects are not followed (a webhook URL answers itself).
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=settings.TRAINYARD_WEBHOOK_TIMEOUT) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise WebhookError(f"HTTP {exc.code}") from None
        raise ValueError(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise WebhookError(str(getattr(exc, "reason", exc))[:200]) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None
