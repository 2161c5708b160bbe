"""Export verbs and the rules they run under.

- **TensorBoard** (`tensorboard_response`): a download built from the stored events; read access
  to the job is enough, like downloading its files.
- **MLflow** (`request_mlflow_export` → worker task → `finish_mlflow_export`): the request is
  checked here (the URI, the job's state, the user's pushes in progress), stored as a row and
  queued after commit on `notify`, the queue for outbound network work. The worker checks the
  URI again, connects only under the webhooks' address rules with their own allowlist
  (`TRAINYARD_MLFLOW_ALLOWLIST`, see webapp/accounts/webhooks.py), and writes artifacts only
  where `artifact_location_problem` allows. `file:` tracking URIs write on this server's disk:
  only inside `TRAINYARD_MLFLOW_FILE_ROOT`, refused while it is unset.
- What the user learns of a failure: the refusal reason, the server's own answer, or "no
  answer" — never the network's error (which would turn exports into a port scanner).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webapp import celery
from webapp.accounts import audit, webhooks
from webapp.exports.history import metric_events
from webapp.exports.models import MlflowExport
from webapp.jobs.events import group_send, user_group
from webapp.jobs.models import Job

log = logging.getLogger(__name__)

KEEP = 20  # a user's finished pushes of one job kept for the page
DEFAULT_EXPERIMENT = "trainyard"
RUN_STATUS = {Job.Status.SUCCEEDED: "FINISHED", Job.Status.FAILED: "FAILED", Job.Status.CANCELLED: "KILLED"}
LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass
class ExportError(Exception):
    message: str
    status: int = 400
    field: str = "tracking_uri"

    def __str__(self) -> str:
        return self.message


# --- TensorBoard -------------------------------------------------------------------------------

def tensorboard_response(user, job: Job, *, asgi: bool):
    """The .tar.gz download. Under ASGI the archive is built in a thread of its own and sent in
    chunks as it is read: Django runs every synchronous view in one shared thread (and would read
    a file response whole into memory there), so a long history must not hold that thread. Under
    WSGI it is a plain file response. The download is audited either way."""
    from channels.db import database_sync_to_async
    from django.http import FileResponse, StreamingHttpResponse
    from django.utils.http import content_disposition_header

    from webapp.exports.tensorboard import CHUNK_BYTES, archive_name, build_archive

    audit.record(user, "job.export_tensorboard", job)
    if not asgi:
        archive, _ = build_archive(job)
        response = FileResponse(archive, as_attachment=True, filename=archive_name(job),
                                content_type="application/gzip")
    else:
        async def stream():
            archive, _ = await database_sync_to_async(build_archive, thread_sensitive=False)(job)
            try:
                while chunk := await sync_to_async(archive.read, thread_sensitive=False)(CHUNK_BYTES):
                    yield chunk
            finally:
                archive.close()

        response = StreamingHttpResponse(stream(), content_type="application/gzip")
        response["Content-Disposition"] = content_disposition_header(True, archive_name(job))
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- MLflow: the URI rules ---------------------------------------------------------------------

def file_root() -> Path | None:
    root = (getattr(settings, "TRAINYARD_MLFLOW_FILE_ROOT", "") or "").strip()
    return Path(os.path.realpath(root)) if root else None


def clean_tracking_uri(uri: str) -> str:
    """The URI to push to, normalised, or ExportError saying why it may not be used."""
    uri = (uri or "").strip()
    if not uri:
        raise ExportError("give the tracking URI, e.g. https://mlflow.example.com")
    if len(uri) > 500:
        raise ExportError("the tracking URI is longer than 500 characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in uri):
        raise ExportError("the tracking URI contains spaces or control characters")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return _clean_http(parts, scheme)
    if scheme == "file":
        return _clean_file(parts)
    also = ", or a file: URI inside this server's MLflow folder" if file_root() else ""
    raise ExportError(f"use the http:// or https:// address of an MLflow tracking server{also} "
                      f"({scheme + ':' if scheme else 'a bare path'} is not supported)")


def _clean_http(parts, scheme: str) -> str:
    if parts.username or parts.password or "@" in parts.netloc:
        raise ExportError("put no user name or password in the URI (Trainyard sends no credentials to "
                          "tracking servers)")
    if parts.query or parts.fragment:
        raise ExportError("the tracking URI takes no query (?…) or fragment (#…)")
    if not _valid_host(parts.hostname or ""):
        raise ExportError("the tracking URI has no valid host name")
    try:
        parts.port
    except ValueError:
        raise ExportError("the tracking URI's port is not a number from 1 to 65535") from None
    url = f"{scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
    try:
        # Checked again on every connection the push opens (DNS rebinding, redirects).
        webhooks.vetted_address(url, must_resolve=False, rules=webhooks.MLFLOW)
    except (webhooks.WebhookRefused, webhooks.WebhookError) as exc:
        raise ExportError(str(exc)) from None
    return url


def _valid_host(host: str) -> bool:
    """A DNS name (internal one-label names included: `mlflow`) or an IP address literal."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        labels = host.rstrip(".").split(".")
        return 0 < len(host) <= 253 and all(LABEL.match(label) for label in labels)


def _clean_file(parts) -> str:
    root = file_root()
    if root is None:
        raise ExportError("file: URIs are not enabled on this server (an administrator can allow a folder "
                          "with TRAINYARD_MLFLOW_FILE_ROOT); use the http(s):// address of a tracking server")
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise ExportError("a file: URI names a folder on this server only: file:///path/to/folder")
    return inside_file_root(url2pathname(parts.path), root).as_uri()


def inside_file_root(path: str, root: Path | None = None) -> Path:
    """The folder, resolved (links followed), if it lies inside the file root; else ExportError."""
    root = root or file_root()
    if root is None:
        raise ExportError("file: URIs are not enabled on this server (TRAINYARD_MLFLOW_FILE_ROOT)")
    if not os.path.isabs(path):
        raise ExportError(f"a file: URI needs an absolute path, e.g. {(root / 'mine').as_uri()}")
    resolved = Path(os.path.realpath(path))
    if resolved != root and root not in resolved.parents:
        raise ExportError(f"file: URIs must point inside {root} (TRAINYARD_MLFLOW_FILE_ROOT)")
    if resolved.exists() and not resolved.is_dir():
        raise ExportError("the file: URI points at a file, not a folder")
    return resolved


def artifact_location_problem(tracking_uri: str, artifact_uri: str) -> str | None:
    """Why the push may not write artifacts where the store put the run's (None: it may).

    A tracking server tells the client where artifacts go; a hostile or misconfigured one could
    name this server's own disk (file:), a cloud bucket with the worker's credentials, or another
    host. Only the server's own artifact service (mlflow-artifacts:, the default of `mlflow
    server`) is written to; with a file: store, only folders inside the file root."""
    tracking, artifacts = urlsplit(tracking_uri), urlsplit(artifact_uri)
    if tracking.scheme == "file":
        if artifacts.scheme not in ("file", ""):
            return f"the experiment keeps its artifacts at a {artifacts.scheme}: location; nothing was pushed"
        try:
            inside_file_root(url2pathname(artifacts.path))
        except ExportError:
            return (f"the experiment keeps its artifacts outside {file_root()} (TRAINYARD_MLFLOW_FILE_ROOT); "
                    "choose another experiment; nothing was pushed")
        return None
    if artifacts.scheme == "mlflow-artifacts" and artifacts.netloc.lower() in ("", tracking.netloc.lower()):
        return None
    where = f"a {artifacts.scheme}: location" if artifacts.scheme else "a path on its own disk"
    return (f"the tracking server keeps this experiment's artifacts at {where}, which Trainyard does not write "
            "to; use a server that serves artifacts itself (mlflow server --serve-artifacts, the default) or "
            "another experiment; nothing was pushed")


def outbound_guard():
    """The connection rules a push runs under (every connection, redirects and retries too)."""
    return webhooks.guarded_connections(webhooks.MLFLOW)


def user_message(exc: BaseException) -> str:
    """A push's failure as the user reads it: an address refusal anywhere in the chain wins."""
    seen, depth = exc, 0
    while seen is not None and depth < 20:
        if isinstance(seen, webhooks.WebhookRefused):
            return f"not sent: {seen}"
        seen, depth = seen.__cause__ or seen.__context__, depth + 1
    return str(exc)


# --- MLflow: the verbs -------------------------------------------------------------------------

def _clean_name(value: str, what: str, default: str, field: str) -> str:
    value = " ".join((value or "").split()) or default
    if len(value) > 200:
        raise ExportError(f"the {what} is longer than 200 characters", field=field)
    return value


def _model_name(value: str, job: Job) -> str:
    """MLflow's rule for registered model names: no `/` or `:`, not `.` or `..`. The job's name,
    the default, is made to fit; a name the user typed is refused instead."""
    default = re.sub(r"[/:]", "-", job.name or "").strip(" .") or "trainyard-model"
    name = _clean_name(value, "model name", default, "model_name")
    if re.search(r"[/:]", name) or set(name) <= {"."}:
        raise ExportError("a registered model name cannot contain / or : (nor be . or ..)", field="model_name")
    return name


def request_mlflow_export(user, job: Job, tracking_uri: str, *, experiment: str = "",
                          register_model: bool = False, model_name: str = "") -> MlflowExport:
    """Check the request, store it, queue the push (after commit). Nothing is stored when refused."""
    if not job.is_final:
        raise ExportError("the job has not ended yet: push it to MLflow once it has (the TensorBoard "
                          "export works at any time)", 409, "job")
    uri = clean_tracking_uri(tracking_uri)
    experiment = _clean_name(experiment, "experiment name", DEFAULT_EXPERIMENT, "experiment")
    model_name = _model_name(model_name, job) if register_model else ""
    active = MlflowExport.objects.filter(user=user, status__in=MlflowExport.ACTIVE).count()
    if active >= settings.TRAINYARD_MLFLOW_MAX_ACTIVE:
        raise ExportError(f"you have {active} MLflow exports queued or running (the limit is "
                          f"{settings.TRAINYARD_MLFLOW_MAX_ACTIVE}); wait for one to end", 429, "request")
    with transaction.atomic():
        export = MlflowExport.objects.create(job=job, user=user, tracking_uri=uri, experiment=experiment,
                                             model_name=model_name)
        audit.record(user, "job.export_mlflow", job, scheme=urlsplit(uri).scheme,
                     host=urlsplit(uri).hostname or "", experiment=experiment, model_name=model_name)
        old = (MlflowExport.objects.filter(job=job, user=user).exclude(status__in=MlflowExport.ACTIVE)
               .values_list("pk", flat=True))
        MlflowExport.objects.filter(pk__in=list(old[KEEP:])).delete()
        transaction.on_commit(lambda: _send(export.pk))
    return export


def _send(pk) -> None:
    try:
        celery.send(celery.MLFLOW_EXPORT_TASK, str(pk))
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds of connection errors
        log.error("could not queue MLflow export %s: %s", pk, exc)
        _finish(pk, MlflowExport.Status.PENDING, error="the export queue (Redis) could not be reached; try again")


def claim_mlflow_export(export_id) -> MlflowExport | None:
    """The worker takes the push (pending → running), or None. A push found already running was
    interrupted (its worker stopped and Celery redelivered it): it fails rather than pushing a
    second run."""
    now = timezone.now()
    if not MlflowExport.objects.filter(pk=export_id, status=MlflowExport.Status.PENDING).update(
            status=MlflowExport.Status.RUNNING, started_at=now):
        _finish(export_id, MlflowExport.Status.RUNNING,
                error="the push was interrupted (its worker stopped); start it again")
        return None
    export = MlflowExport.objects.select_related("job", "job__owner", "job__dataset").get(pk=export_id)
    _tell(export)
    return export


def push_spec(export: MlflowExport) -> dict:
    """The plain spec of workers.exports.mlflow_push.PushSpec, the URI checked again (settings
    may have changed since the request)."""
    job = export.job
    uri = clean_tracking_uri(export.tracking_uri)
    start = job.started_at or job.created_at
    tags = {"mlflow.source.name": "trainyard", "mlflow.source.type": "JOB", "mlflow.user": job.owner.get_username(),
            "trainyard.job_id": str(job.pk), "trainyard.status": job.status, "trainyard.architecture": job.architecture,
            "trainyard.job_url": f"{settings.TRAINYARD_BASE_URL.rstrip('/')}/jobs/{job.pk}/"}
    if job.dataset_id and job.dataset:
        tags["trainyard.dataset"] = job.dataset.name
    if job.error:
        tags["trainyard.error"] = job.error
    return {
        "tracking_uri": uri, "experiment": export.experiment, "run_name": job.name or str(job.pk),
        "status": RUN_STATUS.get(job.status, "FINISHED"), "start_time_ms": int(start.timestamp() * 1000),
        "end_time_ms": int(job.finished_at.timestamp() * 1000) if job.finished_at else None,
        "user": job.owner.get_username(), "tags": tags, "params": job_params(job),
        "artifacts": tuple((str(a.path), a.name, a.sha256) for a in job.artifacts.all()),
        "model_name": export.model_name, "timeout_s": float(settings.TRAINYARD_MLFLOW_TIMEOUT),
    }


def job_params(job: Job) -> dict[str, str]:
    """The job's settings as MLflow params: `model.<name>` for the architecture's, the training
    settings by their own names (as the compare page shows them)."""
    params = {f"model.{k}": _text(v) for k, v in (job.model_config or {}).items()}
    params.update({str(k): _text(v) for k, v in (job.train_config or {}).items()})
    return params


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def metric_history(job_id, upto_seq: int | None = None):
    """The stored metric events as the push reads them: (split, step, wall time, values)."""
    for e in metric_events(job_id, upto_seq):
        yield e.split, e.step, e.wall_time, e.values


def artifact_check(tracking_uri: str):
    return lambda artifact_uri: artifact_location_problem(tracking_uri, artifact_uri)


def finish_mlflow_export(export_id, *, result: dict | None = None, error: str = "", run_id: str = "") -> None:
    """Record the push's outcome once and tell the user's pages."""
    _finish(export_id, MlflowExport.Status.RUNNING, result=result, error=error, run_id=run_id)


def _finish(export_id, expected: str, *, result: dict | None = None, error: str = "", run_id: str = "") -> None:
    result = result or {}
    updated = MlflowExport.objects.filter(pk=export_id, status=expected).update(
        status=MlflowExport.Status.FAILED if error else MlflowExport.Status.DONE, error=error[:2000],
        run_id=str(result.get("run_id") or run_id)[:64], experiment_id=str(result.get("experiment_id", ""))[:64],
        run_url=str(result.get("run_url", ""))[:1000], model_version=str(result.get("model_version", ""))[:32],
        counts=result.get("counts") or {}, finished_at=timezone.now())
    if updated:
        export = MlflowExport.objects.filter(pk=export_id).first()
        if export is not None:
            _tell(export)


def _tell(export: MlflowExport) -> None:
    try:
        group_send(user_group(export.user_id), {"type": "inference.update", "what": "mlflow",
                                                "payload": export.to_dict()})
    except Exception as exc:  # noqa: BLE001 - the page polls as well
        log.warning("could not push MLflow export %s to user %s: %s", export.pk, export.user_id, exc)
