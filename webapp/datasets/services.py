"""Dataset verbs: create (store the upload, queue ingest), mark ready/failed, delete."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from webapp import celery
from webapp.datasets.models import Dataset
from webapp.datasets.validation import DatasetError, sniff_upload

MIN_FREE_BYTES = 256 * 1024 * 1024


def create_dataset(user, uploaded, *, name: str = "", description: str = "",
                   label_column: str = "", val_fraction: float | str | None = None) -> Dataset:
    """Validate the upload cheaply here, keep it under a generated name, queue the ingest."""
    if uploaded is None:
        raise DatasetError("choose a file to upload")
    filename = Path(uploaded.name or "upload").name[:255]
    sniff_upload(Path(uploaded.temporary_file_path()), filename)
    try:
        frac = 0.2 if val_fraction in (None, "") else float(val_fraction)
    except ValueError:
        raise DatasetError("validation fraction must be a number between 0 and 1") from None
    if not 0.0 < frac < 1.0:
        raise DatasetError("validation fraction must be between 0 and 1 (exclusive)")
    free = shutil.disk_usage(settings.DATA_DIR).free
    if free < uploaded.size + MIN_FREE_BYTES:
        raise DatasetError("the server is low on disk space; ask an admin to free some")
    options = {"label_column": label_column.strip() or None, "val_fraction": frac}
    with transaction.atomic():
        ds = Dataset.objects.create(
            owner=user, name=(name.strip() or filename)[:200], description=description,
            original_filename=filename, size_bytes=uploaded.size, options=options,
        )
        ds.upload_path.parent.mkdir(parents=True, exist_ok=True)
        # Same filesystem (the temp dir lives under the data dir): a rename, not a copy.
        shutil.move(uploaded.temporary_file_path(), ds.upload_path)
        transaction.on_commit(lambda: _enqueue_ingest(ds))
    return ds


def _enqueue_ingest(ds: Dataset) -> None:
    try:
        celery.send(celery.INGEST_TASK, str(ds.pk))
    except Exception as exc:  # noqa: BLE001 - broker unreachable: say so instead of "ingesting" forever
        ds.upload_path.unlink(missing_ok=True)
        mark_failed(ds.pk, f"the job queue (Redis) could not be reached: {exc}; upload the file again")


def mark_ready(dataset_id, info: dict) -> None:
    Dataset.objects.filter(pk=dataset_id).update(status=Dataset.Status.READY, info=info, error="")


def mark_failed(dataset_id, error: str) -> None:
    Dataset.objects.filter(pk=dataset_id).update(status=Dataset.Status.FAILED, error=error[:5000])


def delete_dataset(dataset: Dataset) -> None:
    directory, upload = dataset.directory, dataset.upload_path
    dataset.delete()
    shutil.rmtree(directory, ignore_errors=True)
    shutil.rmtree(directory.with_name(directory.name + ".partial"), ignore_errors=True)
    if upload.exists():
        os.unlink(upload)
