"""Dataset verbs: create (store the upload, queue ingest), mark ready, fail ingest, delete."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from models_zoo import kinds
from webapp import celery
from webapp.accounts import audit, storage
from webapp.datasets.models import Dataset, IngestFailure, UploadSession
from webapp.jobs.models import Job
from webapp.datasets.validation import DatasetError, detect_kind, sniff_upload



class UnknownUploadFields(DatasetError):
    """Fields no upload path knows (400 with the list of valid names); nothing is stored."""

    def __init__(self, exc: kinds.UnknownFields):
        super().__init__(str(exc))
        self.unknown, self.valid = exc.unknown, exc.valid


def check_upload_fields(names, extra: tuple[str, ...] = ()) -> None:
    """Refuse a field that no kind and no upload path knows, before anything is stored: a typo
    (`split_colum`) or an option this version lacks must not be silently ignored. `extra`: the
    path's own fields (the form's file and upload id, tus's filename)."""
    try:
        kinds.check_field_names(list(names), extra)
    except kinds.UnknownFields as exc:
        raise UnknownUploadFields(exc) from None


def _options(kind: str, raw: dict) -> dict:
    """The ingest options for `kind`, checked by the kind's options Config (models_zoo.kinds)."""
    try:
        return kinds.form_options(kind, raw)
    except kinds.OptionsError as exc:
        raise DatasetError(str(exc)) from None


def check_options(kind: str, raw: dict) -> dict:
    """`raw` checked as the options of a `kind` dataset (DatasetError), e.g. before an upload
    that will become one starts."""
    if kind not in kinds.KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r}; choose one of {', '.join(kinds.KINDS)}")
    return _options(kind, raw)


def create_dataset(user, uploaded=None, *, upload: UploadSession | None = None, name: str = "",
                   description: str = "", kind: str = "auto", project=None, **raw_options) -> Dataset:
    """Validate the file cheaply here, keep it under a generated name, queue the ingest.

    The file is either `uploaded` (one multipart request) or a completed chunked `upload`.
    """
    if upload is not None:
        if not upload.complete:
            raise UploadIncomplete(f"the upload is incomplete: {upload.received} of {upload.size} bytes received")
        filename, path, size = upload.filename, upload.path, upload.size
    elif uploaded is not None:
        filename, path, size = Path(uploaded.name or "upload").name[:255], Path(uploaded.temporary_file_path()), \
            uploaded.size
    else:
        raise DatasetError("choose a file to upload")
    kind = (kind or "auto").strip()
    if kind == "auto":
        kind = detect_kind(path, filename)
    if kind not in kinds.KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r}; choose one of {', '.join(kinds.KINDS)}")
    sniff_upload(path, filename, kind)
    options = _options(kind, raw_options)
    # The check and the row that accounts for the bytes are one step (the user's lock): parallel
    # uploads cannot each see the same free quota. A finished chunked upload's bytes move from
    # its session to the dataset: counted once.
    with _reserve(user, size, "this upload", exclude_upload=upload):
        ds = Dataset.objects.create(
            owner=user, project=project, name=(name.strip() or filename)[:200], description=description, kind=kind,
            original_filename=filename, size_bytes=size, options=options,
        )
        if upload is not None:
            upload.delete()
        audit.record(user, "dataset.create", ds, kind=kind, filename=filename, size=size)
        ds.upload_path.parent.mkdir(parents=True, exist_ok=True)
        # Same filesystem (the temp dir lives under the data dir): a rename, not a copy.
        shutil.move(path, ds.upload_path)
        transaction.on_commit(lambda: _enqueue_ingest(ds))
    return ds


class UploadIncomplete(DatasetError):
    """The chunked upload still lacks bytes: the client may send them and try again."""


@contextmanager
def _reserve(user, size: int, what: str, exclude_upload: UploadSession | None = None):
    """storage.reserve, its refusal worded as a DatasetError."""
    try:
        with storage.reserve(user, size, what, exclude_upload=exclude_upload) as usage:
            yield usage
    except storage.QuotaExceeded as exc:
        raise DatasetError(str(exc)) from None


class TooManyUploads(DatasetError):
    """The user has TRAINYARD_MAX_OPEN_UPLOADS uploads in progress already (429)."""


STALE_UPLOAD = timedelta(hours=24)


def start_upload(user, filename: str, size) -> UploadSession:
    filename = Path(str(filename or "")).name.strip()[:255]
    if not filename:
        raise DatasetError("the file needs a name")
    try:
        size = int(size)
    except (TypeError, ValueError):
        raise DatasetError("size must be the file's length in bytes") from None
    if size <= 0:
        raise DatasetError(f"{filename}: the file is empty")
    if size > settings.MAX_UPLOAD_BYTES:
        raise DatasetError(f"{filename}: larger than the {settings.MAX_UPLOAD_BYTES // 2**20} MB upload limit")
    for stale in UploadSession.objects.filter(created_at__lt=timezone.now() - STALE_UPLOAD):
        abort_upload(stale)  # abandoned uploads must not hold quota or disk forever
    with _reserve(user, size, "this upload"):  # the session holds its declared size from now on
        open_uploads = UploadSession.objects.filter(owner=user).count()
        if open_uploads >= settings.TRAINYARD_MAX_OPEN_UPLOADS:
            raise TooManyUploads(f"you have {open_uploads} uploads in progress, the limit is "
                                 f"{settings.TRAINYARD_MAX_OPEN_UPLOADS}; finish or cancel one first")
        session = UploadSession.objects.create(owner=user, filename=filename, size=size)
    session.path.parent.mkdir(parents=True, exist_ok=True)
    session.path.touch()
    return session


def append_chunk(session: UploadSession, start: int, stream, length: int) -> UploadSession:
    """Append bytes [start, start+length) read from `stream`; chunks must arrive in order.

    A repeated chunk that is already stored (a client retry) is accepted and ignored.
    """
    if length > settings.UPLOAD_CHUNK_BYTES:
        raise DatasetError(f"chunks may be at most {settings.UPLOAD_CHUNK_BYTES // 2**20} MB")
    if start + length > session.size:
        raise DatasetError(f"the chunk ends at byte {start + length}, past the declared size {session.size}")
    with transaction.atomic():
        session = UploadSession.objects.select_for_update().get(pk=session.pk)
        if start + length <= session.received:
            return session  # already have it
        if start != session.received:
            raise UploadOutOfOrder(session.received)
        written = 0
        with open(session.path, "r+b") as f:
            f.seek(start)
            f.truncate()
            while written < length:
                block = stream.read(min(1 << 20, length - written))
                if not block:
                    break
                f.write(block)
                written += len(block)
        if written != length:
            raise DatasetError(f"the chunk was {written} bytes, but Content-Range announced {length}")
        session.received = start + length
        session.save(update_fields=["received"])
    return session


class UploadOutOfOrder(DatasetError):
    def __init__(self, received: int):
        super().__init__(f"expected the chunk starting at byte {received}")
        self.received = received


def upload_for(user, pk) -> UploadSession:
    """The user's own upload session (a form field names it), or a DatasetError."""
    try:
        return UploadSession.objects.get(pk=pk, owner=user)
    except (UploadSession.DoesNotExist, ValidationError, ValueError):
        raise DatasetError("the upload was not found; choose the file again") from None


def abort_upload(session: UploadSession) -> None:
    session.path.unlink(missing_ok=True)
    session.delete()


def _enqueue_ingest(ds: Dataset) -> None:
    try:
        celery.send(celery.INGEST_TASK, str(ds.pk))
    except Exception as exc:  # noqa: BLE001 - broker unreachable: say so instead of "ingesting" forever
        ds.queue_error = str(exc)  # the API's 503: told apart from an ingest that refused the file first
        fail_ingest(ds, f"the job queue (Redis) could not be reached: {exc}; upload the file again")


def mark_ready(dataset_id, info: dict, size_bytes: int) -> None:
    Dataset.objects.filter(pk=dataset_id).update(status=Dataset.Status.READY, info=info, error="", progress=1.0,
                                                 size_bytes=size_bytes)


def set_progress(dataset_id, fraction: float) -> None:
    Dataset.objects.filter(pk=dataset_id, status=Dataset.Status.INGESTING).update(progress=round(fraction, 4))


def update_dataset(dataset: Dataset, *, name: str | None = None, description: str | None = None,
                   actor=None) -> Dataset:
    if name is not None:
        name = name.strip()
        if not name:
            raise DatasetError("the name cannot be empty")
        dataset.name = name[:200]
    if description is not None:
        dataset.description = description[:10_000]
    dataset.save(update_fields=["name", "description", "updated_at"])
    audit.record(actor, "dataset.update", dataset)
    return dataset


def share_dataset(dataset: Dataset, username: str, actor=None) -> None:
    User = get_user_model()
    other = User.objects.filter(username=username.strip(), is_active=True).first()
    if other is None:
        raise DatasetError(f"no active user named {username.strip()!r}")
    if other == dataset.owner:
        raise DatasetError("you own this dataset already")
    dataset.shared_with.add(other)
    audit.record(actor, "dataset.share", dataset, user=other.get_username())


def unshare_dataset(dataset: Dataset, username: str, actor=None) -> None:
    """Stop sharing with `username`; their queued and running jobs on it end (cancelled, with
    the reason on each), so nothing of theirs keeps using — or blocks deleting — the data."""
    from webapp.jobs.cancel import cancel_active_jobs

    removed = list(dataset.shared_with.filter(username=username))
    dataset.shared_with.remove(*removed)
    if removed:
        cancel_active_jobs(dataset.jobs.filter(owner__in=removed), actor=actor,
                           reason=f"the owner of dataset “{dataset.name}” stopped sharing it")
    audit.record(actor, "dataset.unshare", dataset, user=username)


FAILURES_KEPT = 20  # notices per owner; older ones go


def fail_ingest(dataset: Dataset, error: str) -> IngestFailure | None:
    """The file was refused: delete the dataset row and every file, keep only the reason.

    The owner sees an IngestFailure (same id as the dataset had) on the datasets page and from
    the API until they dismiss it. Returns None when the dataset was deleted meanwhile.
    """
    failure = None
    with transaction.atomic():
        ds = Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
        if ds is not None:
            failure = IngestFailure.objects.create(
                id=ds.pk, owner_id=ds.owner_id, name=ds.name, kind=ds.kind,
                original_filename=ds.original_filename, error=error[:5000],
            )
            audit.record(None, "dataset.ingest_failed", ds, error=error[:500])
            ds.delete()
            old = IngestFailure.objects.filter(owner_id=ds.owner_id).values_list("pk", flat=True)[FAILURES_KEPT:]
            IngestFailure.objects.filter(pk__in=list(old)).delete()
    remove_files(files_of(dataset))
    return failure


def dismiss_failure(failure: IngestFailure) -> None:
    failure.delete()


def files_of(dataset: Dataset) -> list[Path]:
    """Every path a dataset may own: its cache, a half-written .partial, the stored upload."""
    directory = dataset.directory
    return [directory, directory.with_name(directory.name + ".partial"), dataset.upload_path]


def remove_files(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def delete_dataset(dataset: Dataset, actor=None) -> None:
    """Delete a dataset with its files. The owner's own queued/running jobs on it must be
    cancelled first (409, they may want them); other users' jobs (it was shared with them) are
    cancelled with the reason — those the owner could not cancel must not block them."""
    from webapp.jobs.cancel import cancel_active_jobs

    active = dataset.jobs.filter(status__in=["queued", "running"], owner_id=dataset.owner_id).count()
    if active:
        raise DatasetError(f"{active} queued or running job(s) use this dataset; cancel them first")
    others = dataset.jobs.exclude(owner_id=dataset.owner_id)
    cancel_active_jobs(others, actor=actor, reason=f"the owner of dataset “{dataset.name}” deleted it")
    if others.filter(status=Job.Status.RUNNING).exists():
        raise DatasetError("other users' jobs on this dataset are stopping; delete it again in a few seconds")
    paths = files_of(dataset)  # before delete(), which clears the pk they derive from
    audit.record(actor, "dataset.delete", dataset)
    dataset.delete()
    remove_files(paths)
