"""Pretrained models: who may see which, the check of a job's model source, uploads, deletion."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.http import Http404

from models_zoo.archive import ModelZipError, check_model_zip
from models_zoo.hf import TASKS, is_hf, local_name
from webapp import celery
from webapp.accounts import audit, storage
from webapp.hub.models import NAME_RE, LocalModel
from webapp.jobs.access import may_write
from webapp.projects import access as projects

log = logging.getLogger(__name__)


class HubError(ValueError):
    """A refused upload or request; the message is for the user."""


def models_for(user):
    """Models `user` may pick or see: the registered ones, their own uploads and their projects'
    (staff: all)."""
    return projects.visible(user, LocalModel.objects.select_related("owner", "project"), also=Q(owner__isnull=True))


def get_model_for_user(user, pk, write: bool = False) -> LocalModel:
    """The model if `user` may see it (write: delete — their own upload, a maintainer of its
    project, or staff with the permission), else Http404; a project viewer or member: 403."""
    if not user.is_authenticated:
        raise Http404
    qs = models_for(user)
    if write and not user.is_staff:
        qs = projects.visible(user, qs)  # a registered model: 404 for users, as before
    try:
        model = qs.get(pk=pk)
    except (LocalModel.DoesNotExist, ValidationError, ValueError, TypeError):
        raise Http404 from None
    if write and not may_write(user, model, "delete"):  # staff: only with hub.delete_localmodel
        raise PermissionDenied(projects.refusal(user, model, "delete"))
    return model


def find(user, name: str) -> LocalModel | None:
    """What "local:<name>" means for `user`: their own upload first, then one of their projects'
    (the oldest), then a registered model."""
    found = LocalModel.objects.filter(name=name, status=LocalModel.Status.READY).filter(
        Q(owner=user) | Q(owner__isnull=True) | Q(project__in=projects.project_ids(user)))
    rank = {"own": 0, "project": 1, "registered": 2}
    return min(found, key=lambda m: (rank[_origin(user, m)], m.created_at), default=None)


def _origin(user, model: LocalModel) -> str:
    return "own" if model.owner_id == user.pk else "registered" if model.owner_id is None else "project"


def choices_for(user, architecture: str) -> list[tuple[str, str]]:
    """(value, label) suggestions for the model field of an HF architecture's form."""
    task = TASKS.get(architecture)
    rows = models_for(user).filter(task=task, status=LocalModel.Status.READY).filter(
        Q(owner__isnull=True) | Q(owner=user) | Q(project__in=projects.project_ids(user)))
    label = {"own": "your upload", "registered": "registered on the server"}
    return [(m.reference, f"{m.name} ({label.get(_origin(user, m)) or 'project ' + m.project.name})") for m in rows]


def check_job_model(user, architecture: str, model_config: dict) -> dict[str, str]:
    """Errors (model_config.model -> message) for a job's local model; Hub ids are checked
    when the job starts (the web tier does not reach out to the Hub)."""
    if not is_hf(architecture):
        return {}
    name = local_name(str(model_config.get("model", "")))
    if name is None:
        return {}
    found = find(user, name)
    if found is None:
        pending = LocalModel.objects.filter(name=name, owner=user).exclude(status=LocalModel.Status.READY).first()
        if pending is not None:
            state = "is still being extracted" if pending.status == LocalModel.Status.EXTRACTING else "was refused"
            return {"model_config.model": f"local:{name} {state}; see the Models page"}
        return {"model_config.model": f"there is no local model named {name!r}; see the Models page"}
    if found.task != TASKS[architecture]:
        return {"model_config.model": f"local:{name} is a {found.get_task_display().lower()} model, not "
                                      f"{LocalModel.Task(TASKS[architecture]).label.lower()}"}
    return {}


def local_path(user, model: str) -> str | None:
    """The folder behind "local:<name>" for the job's owner (the Celery task passes it on)."""
    name = local_name(model or "")
    if name is None:
        return None
    found = find(user, name)
    return found.path if found is not None else None


def upload_model(user, uploaded=None, *, upload=None, name: str = "", task: str = "",
                 description: str = "", project=None) -> LocalModel:
    """Check a save_pretrained ZIP and queue its extraction; nothing is left on refusal.

    The request reads only the ZIP's central directory (entry names, sizes, overlaps, where
    config.json and the safetensors weights are): a bad ZIP is refused here with its reason.
    The bytes are unpacked by a worker (`trainyard.extract_model_zip`, the ingest queue), so a
    large model never ties up the web tier; until then the row is `extracting`, and jobs cannot
    pick it."""
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise HubError("name: use letters, digits, '.', '_' and '-' (starting with a letter or digit)")
    if task not in LocalModel.Task.values:
        raise HubError(f"task: choose one of {', '.join(LocalModel.Task.values)}")
    if LocalModel.objects.filter(name=name).filter(Q(owner=user) | Q(owner__isnull=True)).exists():
        raise HubError(f"name: you already have a model called {name!r} (or one is registered on the server)")
    if upload is not None:
        if not upload.complete:
            raise HubError(f"the upload is incomplete: {upload.received} of {upload.size} bytes received")
        path, size = upload.path, upload.size
    elif uploaded is not None:
        path, size = Path(uploaded.temporary_file_path()), uploaded.size
    else:
        raise HubError("choose a ZIP file to upload")
    try:
        unpacked = check_model_zip(path)  # the central directory: names, sizes, ratios, weights
    except ModelZipError as exc:
        raise HubError(str(exc)) from None

    pk = uuid.uuid4()
    directory = Path(settings.DATA_DIR) / "models" / str(pk)
    model = LocalModel(id=pk, name=name, task=task, path=str(directory), owner=user, project=project,
                       description=description[:5000], size_bytes=size + unpacked,
                       status=LocalModel.Status.EXTRACTING)  # the ZIP and what it unpacks to, counted
    model.zip_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # The quota check and the row that holds the bytes are one step under the user's lock.
        with storage.reserve(user, size + unpacked, "this model (the ZIP and its unpacked files)",
                             exclude_upload=upload):
            model.save(force_insert=True)
            if upload is not None:
                upload.delete()
            audit.record(user, "model.upload", model, task=task, bytes=size)
            # The upload (a session's file, or Django's temporary file, which it then need not
            # remove) becomes the pending ZIP: a rename on the data dir's filesystem, no copy.
            shutil.move(path, model.zip_path)
            transaction.on_commit(lambda: _enqueue_extraction(pk))
    except storage.QuotaExceeded as exc:  # raised before anything moved
        raise HubError(str(exc)) from None
    except BaseException:
        if model.zip_path.exists():  # rolled back after the move: the file goes back to the upload
            shutil.move(model.zip_path, path)
        raise
    return model


def _enqueue_extraction(pk) -> None:
    try:
        celery.send(celery.MODELZIP_TASK, str(pk))
    except Exception as exc:  # noqa: BLE001 - broker unreachable: say so instead of "extracting" forever
        finish_extraction(pk, None, f"the job queue (Redis) could not be reached: {exc}; upload the ZIP again")


def finish_extraction(pk, result: dict | None, error: str = "") -> str:
    """Record the worker's outcome once (conditional UPDATE): ready with the folder's size, or
    refused with the reason (the folder is gone; the row stays as the owner's notice)."""
    model = LocalModel.objects.filter(pk=pk).first()
    if model is None:
        return "gone"
    model.zip_path.unlink(missing_ok=True)
    pending = LocalModel.objects.filter(pk=pk, status=LocalModel.Status.EXTRACTING)
    if result is None:
        pending.update(status=LocalModel.Status.FAILED, error=error[:5000], size_bytes=0)
        return "failed"
    if not pending.update(status=LocalModel.Status.READY, size_bytes=result["size_bytes"]):
        return "gone"
    audit.record(model.owner, "model.extracted", model, files=len(result["files"]), skipped=result["skipped"][:20])
    return "ready"


def delete_model(model: LocalModel, actor=None) -> None:
    """Remove the row; an upload's folder goes with it (a registered folder stays on disk)."""
    audit.record(actor, "model.delete", model)
    folder = Path(model.path) if model.is_upload else None
    zip_path = model.zip_path if model.is_upload else None
    model.delete()
    if zip_path is not None:
        zip_path.unlink(missing_ok=True)  # still waiting for (or being read by) the extraction
    if folder is not None:
        remove_folder(folder)


def remove_folder(folder: Path) -> None:
    """Remove an uploaded model's folder (only ever one under the data dir's models/)."""
    if folder.parent == Path(settings.DATA_DIR) / "models":
        shutil.rmtree(folder, ignore_errors=True)
