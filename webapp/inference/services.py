"""Try-the-model and ONNX export verbs: checks at the web boundary, a row, a task after commit;
the worker's result is stored and pushed to the user's socket (`ws/user/`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from models_zoo.contracts import MAX_IMAGE_BYTES, MAX_TEXT_CHARS, onnx_unsupported
from models_zoo.hf import TASKS as HF_TASKS
from models_zoo.hf import TRY_FIELDS as HF_TRY_FIELDS
from models_zoo.hf import TRY_FORMS, is_hf
from models_zoo.kinds import KINDS, kind_of
from webapp import celery
from webapp.accounts import audit, storage
from webapp.inference.models import BatchPrediction, OnnxExport, Prediction
from webapp.jobs.events import group_send, user_group
from webapp.jobs.models import Job

log = logging.getLogger(__name__)

KEEP = 20
KEEP_BATCHES = 5  # a user's finished try-many files per job (inputs and predictions); older ones go
# What a try-many file may be, per kind of dataset (the readers in workers/serving/batch.py).
BATCH_EXTENSIONS = {"tabular": (".csv", ".tsv", ".tab", ".txt"), "sequence": (".csv", ".tsv", ".tab", ".txt"),
                    "text": (".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".json"), "image": (".zip",)}


@dataclass
class TryError(Exception):
    message: str
    status: int = 400

    def __str__(self) -> str:
        return self.message


def model_config(job: Job) -> dict | None:
    """The exported config.json of a succeeded zoo job, or None."""
    import json

    if job.status != Job.Status.SUCCEEDED or not job.artifacts.filter(name="model.safetensors").exists():
        return None
    try:
        return json.loads((job.directory / "artifacts" / "config.json").read_text())
    except (OSError, ValueError):
        return None


def hf_model_ready(job: Job) -> bool:
    return job.status == Job.Status.SUCCEEDED and job.artifacts.filter(name="model.zip").exists()


def try_kind(job: Job) -> tuple[str | None, str]:
    """The try form for this job (a dataset kind for zoo models; `text`, `image` or `lm` for
    Hugging Face models), or (None, why the model cannot be tried)."""
    if is_hf(job.architecture):
        if not hf_model_ready(job):
            return None, "Only a succeeded job with an exported model can be tried."
        return TRY_FORMS[HF_TASKS[job.architecture]], ""
    cfg = model_config(job)
    if cfg is None:
        return None, "Only a succeeded job with an exported model can be tried."
    kind = kind_of(cfg.get("dataset", {}))
    if kind not in KINDS:
        return None, f"Models of {kind} datasets cannot be tried here."
    return kind, ""


def try_fields(job: Job, kind: str) -> tuple[str, ...]:
    return HF_TRY_FIELDS[kind] if is_hf(job.architecture) else KINDS[kind].try_fields


def _push(user_id, what: str, payload: dict) -> None:
    try:
        group_send(user_group(user_id), {"type": "inference.update", "what": what, "payload": payload})
    except Exception as exc:  # noqa: BLE001 - the page polls as well
        log.warning("could not push %s to user %s: %s", what, user_id, exc)


def create_prediction(user, job: Job, data: dict, image=None) -> Prediction:
    """Check the request, store it, queue the inference task (after commit)."""
    kind, why = try_kind(job)
    if kind is None:
        raise TryError(why, 409)
    inputs = {k: data[k] for k in try_fields(job, kind) if k in data}
    for k, v in inputs.items():
        if isinstance(v, str) and len(v) > MAX_TEXT_CHARS:
            raise TryError(f"{k}: longer than {MAX_TEXT_CHARS} characters")
    if kind == "text" and not str(inputs.get("text", "")).strip():
        raise TryError("type a text")
    if kind in ("corpus", "lm") and not str(inputs.get("prompt", "")).strip():
        raise TryError("give a prompt")
    if kind == "sequence" and not str(inputs.get("sequence", "")).strip():
        raise TryError("enter the sequence as comma-separated numbers")
    if kind == "image":
        if image is None:
            raise TryError("choose an image file")
        if image.size > MAX_IMAGE_BYTES:
            raise TryError(f"the image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
        if image.size == 0:
            raise TryError("the image file is empty")
    try:
        # The image counts against the quota until it is answered (and removed); checked and
        # created under the user's lock, like every other stored byte (accounts/storage.py).
        with storage.reserve(user, image.size if image is not None else 0, "this image"):
            p = _store_prediction(user, job, kind, inputs, image)
    except storage.QuotaExceeded as exc:
        raise TryError(str(exc), 413) from None
    return p


def _store_prediction(user, job: Job, kind: str, inputs: dict, image) -> Prediction:
    p = Prediction.objects.create(job=job, user=user, inputs=inputs,
                                  image_name=(image.name or "")[:200] if image is not None else "")
    if image is not None:
        p.image_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.image_path.with_suffix(".partial")
        with open(tmp, "wb") as f:
            for chunk in image.chunks():
                f.write(chunk)
        os.replace(tmp, p.image_path)
    audit.record(user, "job.try", job, kind=kind)
    # Keep a user's last KEEP answered tries per job; older rows go.
    old = Prediction.objects.filter(job=job, user=user).exclude(status=Prediction.Status.PENDING)
    Prediction.objects.filter(pk__in=list(old.values_list("pk", flat=True)[KEEP:])).delete()
    transaction.on_commit(lambda: _send(celery.PREDICT_TASK, p.pk, lambda exc: finish_prediction(
        p.pk, error=f"the inference queue (Redis) could not be reached: {exc}")))
    return p


def _send(task: str, pk, on_error) -> None:
    try:
        celery.send(task, str(pk))
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds of connection errors
        log.error("could not queue %s %s: %s", task, pk, exc)
        on_error(exc)


def push_tokens(p: Prediction, offset: int, text: str) -> None:
    """Part of a language model's answer while it is generated: `text` starts at character
    `offset` of the answer. Only pushed (the page appends it); the row gets the whole answer."""
    _push(p.user_id, "prediction_tokens", {"id": str(p.pk), "offset": offset, "text": text})


def finish_prediction(pk, *, result: dict | None = None, error: str = "", seconds: float | None = None) -> None:
    """Record a try's outcome once (a redelivered task does not overwrite it) and tell the page."""
    status = Prediction.Status.FAILED if error else Prediction.Status.DONE
    if not Prediction.objects.filter(pk=pk, status=Prediction.Status.PENDING).update(
        status=status, result=result or {}, error=error[:2000], seconds=seconds, finished_at=timezone.now()
    ):
        return
    p = Prediction.objects.get(pk=pk)
    p.image_path.unlink(missing_ok=True)  # inputs are not kept once answered
    _push(p.user_id, "prediction", p.to_dict())


def request_onnx_export(user, job: Job) -> OnnxExport:
    """Queue the ONNX export of a succeeded zoo job (again, if it failed before)."""
    cfg = model_config(job)
    if cfg is None or job.architecture.startswith("hf_"):
        raise TryError("Only a succeeded zoo job with an exported model can be exported to ONNX.", 409)
    if reason := onnx_unsupported(cfg):
        raise TryError(f"ONNX export is not available for this model: {reason}.", 409)
    with transaction.atomic():
        export, created = OnnxExport.objects.select_for_update().get_or_create(job=job)
        if not created and export.status in (OnnxExport.Status.PENDING, OnnxExport.Status.DONE):
            return export
        OnnxExport.objects.filter(pk=export.pk).update(status=OnnxExport.Status.PENDING, error="",
                                                       max_abs_diff=None, meta={})
        audit.record(user, "job.export_onnx", job)
        transaction.on_commit(lambda: _send(celery.ONNX_TASK, job.pk, lambda exc: finish_onnx_export(
            job.pk, error=f"the queue (Redis) could not be reached: {exc}")))
    export.refresh_from_db()
    return export


def finish_onnx_export(job_id, *, meta: dict | None = None, error: str = "") -> None:
    """Record the export: on success model.onnx and model.onnx.json become artifacts."""
    from webapp.jobs.lifecycle import add_artifacts

    with transaction.atomic():
        if not OnnxExport.objects.filter(job_id=job_id, status=OnnxExport.Status.PENDING).update(
            status=OnnxExport.Status.FAILED if error else OnnxExport.Status.DONE, error=error[:5000],
            max_abs_diff=(meta or {}).get("max_abs_diff"), meta=meta or {},
        ):
            return
        if not error:
            add_artifacts(job_id, ["model.onnx", "model.onnx.json"])
    export = OnnxExport.objects.select_related("job").get(job_id=job_id)
    payload = export.to_dict()
    payload["artifacts"] = [a.to_dict() for a in export.job.artifacts.all()]
    _push(export.job.owner_id, "onnx", payload)


def job_page_context(job: Job) -> dict:
    """What the job page shows about the ONNX export (read only)."""
    if job.status != Job.Status.SUCCEEDED or job.architecture.startswith("hf_"):
        return {}
    export = OnnxExport.objects.filter(job=job).first()
    cfg = model_config(job)
    return {"onnx": export, "onnx_unsupported": onnx_unsupported(cfg) if cfg else "the job has no exported model",
            "onnx_diff": f"{export.max_abs_diff:.2g}" if export and export.max_abs_diff is not None else ""}


# -- try many ------------------------------------------------------------------------------------


def batch_kind(job: Job) -> tuple[str | None, str]:
    """The dataset kind whose files a try-many of this job reads, or (None, why not)."""
    if is_hf(job.architecture):
        return None, "Try many is for the zoo's models; try a Hugging Face model one input at a time."
    kind, why = try_kind(job)
    if kind is None:
        return None, why
    if kind not in BATCH_EXTENSIONS:
        return None, f"Try many reads tables, sequences, texts and images, not {KINDS[kind].noun or kind} data."
    return kind, ""


def create_batch(user, job: Job, upload) -> BatchPrediction:
    """Check and store a try-many file, queue its task on `infer` (after commit). The size, the
    user's batches at once and the quota are checked under the user's lock, so parallel
    requests at the limit accept exactly the limit."""
    from pathlib import Path

    from django.conf import settings

    kind, why = batch_kind(job)
    if kind is None:
        raise TryError(why, 409)
    if upload is None:
        raise TryError("choose a file of inputs")
    name = Path(upload.name or "").name[:200]
    if not name.lower().endswith(BATCH_EXTENSIONS[kind]):
        raise TryError(f"a {KINDS[kind].noun or kind} model reads {', '.join(BATCH_EXTENSIONS[kind])} files; "
                       f"{name or 'this file'} is not one")
    limit = settings.TRAINYARD_MAX_BATCH_MB * 1024 * 1024
    if upload.size > limit:
        raise TryError(f"the file is larger than {settings.TRAINYARD_MAX_BATCH_MB} MB, the limit for one try-many "
                       f"file (TRAINYARD_MAX_BATCH_MB)", 413)
    if upload.size == 0:
        raise TryError("the file is empty")
    try:
        with storage.reserve(user, upload.size, "this file"):
            active = BatchPrediction.objects.filter(user=user, status__in=BatchPrediction.ACTIVE).count()
            if active >= settings.TRAINYARD_MAX_ACTIVE_BATCHES:
                raise TryError(f"you have {active} try-many files waiting or running, the limit is "
                               f"{settings.TRAINYARD_MAX_ACTIVE_BATCHES}; wait for one to finish", 429)
            b = BatchPrediction.objects.create(job=job, user=user, filename=name, size_bytes=upload.size)
            b.folder.mkdir(parents=True, exist_ok=True)
            tmp = b.input_path.with_name(b.input_path.name + ".partial")
            try:
                with open(tmp, "wb") as f:
                    for chunk in upload.chunks():
                        f.write(chunk)
                os.replace(tmp, b.input_path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            audit.record(user, "job.try_many", job, kind=kind, size=upload.size)
            transaction.on_commit(lambda: _send(celery.BATCH_PREDICT_TASK, b.pk, lambda exc: finish_batch(
                b.pk, error=f"the inference queue (Redis) could not be reached: {exc}")))
    except storage.QuotaExceeded as exc:
        raise TryError(str(exc), 413) from None
    _forget_old_batches(user, job)
    return b


def _forget_old_batches(user, job: Job) -> None:
    old = list(BatchPrediction.objects.filter(user=user, job=job).exclude(status__in=BatchPrediction.ACTIVE)[
        KEEP_BATCHES:])
    for b in old:
        remove_batch_files(b)
    BatchPrediction.objects.filter(pk__in=[b.pk for b in old]).delete()


def remove_batch_files(b: BatchPrediction) -> None:
    for p in (b.input_path, b.output_path):
        p.unlink(missing_ok=True)


def claim_batch(pk) -> BatchPrediction | None:
    """pending -> running (once: a redelivered task finds it claimed and does nothing)."""
    if not BatchPrediction.objects.filter(pk=pk, status=BatchPrediction.Status.PENDING).update(
            status=BatchPrediction.Status.RUNNING):
        return None
    return BatchPrediction.objects.select_related("job").get(pk=pk)


def batch_progress(pk, done: int, total: int) -> None:
    """The worker's progress (throttled by the caller); the page polls the row and the socket
    tells it to look."""
    if BatchPrediction.objects.filter(pk=pk, status=BatchPrediction.Status.RUNNING).update(
            rows_done=done, rows_total=total):
        b = BatchPrediction.objects.get(pk=pk)
        _push(b.user_id, "batch", b.to_dict())


def finish_batch(pk, *, rows: int = 0, failed: int = 0, problems: list | None = None, error: str = "",
                 seconds: float | None = None) -> None:
    """Record the outcome once; the input file goes (the predictions stay until deleted with the
    row); a failure leaves no output."""
    status = BatchPrediction.Status.FAILED if error else BatchPrediction.Status.DONE
    if not BatchPrediction.objects.filter(pk=pk, status__in=BatchPrediction.ACTIVE).update(
            status=status, rows_done=rows, rows_total=rows, rows_failed=failed, problems=(problems or [])[:20],
            error=error[:2000], seconds=seconds, finished_at=timezone.now()):
        return
    b = BatchPrediction.objects.get(pk=pk)
    b.input_path.unlink(missing_ok=True)
    if error:
        b.output_path.unlink(missing_ok=True)
    _push(b.user_id, "batch", b.to_dict())
