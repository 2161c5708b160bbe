"""Storage accounting: every byte a user owns, by category, and the one check-and-reserve.

What counts (each category is a row that already exists, so nothing here can drift from it):
    datasets  `Dataset.size_bytes`: the stored upload while it ingests, then its cache + source;
    uploads   `UploadSession.size`: a chunked upload in progress holds its declared size;
    models    `LocalModel.size_bytes` of the user's uploads: while extracting the ZIP plus its
              declared uncompressed total, then the extracted folder;
    tries     try-the-model images waiting for their answer (`$DATA_DIR/inference/<id>.img`),
              and try-many files with their predictions (`inference/batches/`);
    jobs      every file under each of the user's job folders (checkpoints, artifacts, logs).

`reserve(user, nbytes, what)` is the atomic step: in one transaction it locks the user's row
(`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's IMMEDIATE transactions take the database's
write lock at BEGIN), re-reads the usage, refuses with `QuotaExceeded` when `nbytes` do not fit,
and lets the caller create its row (the reservation) before the lock is released. So parallel
requests of one user queue on that lock and exactly what fits is accepted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Sum

CATEGORIES = ("datasets", "uploads", "models", "tries", "jobs")
MIN_FREE_BYTES = 256 * 1024 * 1024  # the disk keeps this much free whatever the quotas say


class QuotaExceeded(ValueError):
    """The bytes do not fit the user's quota (or the disk); the message is for the user."""

    status = 413


def mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def quota_bytes(user=None) -> int:
    """The per-user quota (TRAINYARD_USER_QUOTA_MB); the same for everyone today."""
    return settings.TRAINYARD_USER_QUOTA_MB * 1024 * 1024


def _sum(qs, field: str) -> int:
    return qs.aggregate(total=Sum(field))["total"] or 0


def _tree_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed meanwhile
    return total


def usage_bytes(user, exclude_upload=None) -> dict[str, int]:
    """Bytes the user owns per category, and "total". `exclude_upload`: an upload session
    that is being turned into a dataset or model right now (its bytes are counted once)."""
    from webapp.datasets.models import Dataset, UploadSession
    from webapp.hub.models import LocalModel
    from webapp.inference.models import BatchPrediction, Prediction
    from webapp.jobs.models import Job

    uploads = UploadSession.objects.filter(owner=user)
    if exclude_upload is not None:
        uploads = uploads.exclude(pk=exclude_upload.pk)
    tries = Prediction.objects.filter(user=user, status=Prediction.Status.PENDING).exclude(image_name="")
    batches = BatchPrediction.objects.filter(user=user)
    usage = {
        "datasets": _sum(Dataset.objects.filter(owner=user), "size_bytes"),
        "uploads": _sum(uploads, "size"),
        "models": _sum(LocalModel.objects.filter(owner=user), "size_bytes"),
        "tries": sum(p.image_path.stat().st_size for p in tries if p.image_path.exists())
        + sum(b.stored_bytes() for b in batches),
        "jobs": sum(_tree_bytes(job.directory) for job in Job.objects.filter(owner=user).only("id")),
    }
    usage["total"] = sum(usage[c] for c in CATEGORIES)
    return usage


def remaining_bytes(user) -> int:
    """What the user may still write (never negative)."""
    return max(0, quota_bytes(user) - usage_bytes(user)["total"])


def summary(user) -> dict:
    """Usage by category with the quota: the datasets page's line and the API's answer."""
    usage = usage_bytes(user)
    quota = quota_bytes(user)
    return {"used": usage["total"], "quota": quota, "remaining": max(0, quota - usage["total"]),
            "by_category": {c: usage[c] for c in CATEGORIES}}


def _lock_user(user) -> None:
    """Serialise this user's reservations: a row lock on PostgreSQL; on SQLite the IMMEDIATE
    transaction already holds the database's write lock, and the query is a no-op read."""
    get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()


def check(user, nbytes: int, what: str, exclude_upload=None) -> dict[str, int]:
    """Refuse (QuotaExceeded) when `nbytes` more would pass the quota or fill the disk.
    Call it inside `reserve`, or the answer may be stale by the time the bytes are written."""
    usage = usage_bytes(user, exclude_upload=exclude_upload)
    quota = quota_bytes(user)
    if usage["total"] + nbytes > quota:
        parts = ", ".join(f"{c} {mb(usage[c])}" for c in CATEGORIES if usage[c])
        raise QuotaExceeded(f"{what} ({mb(nbytes)}) would exceed your storage quota: {mb(usage['total'])} of "
                            f"{quota / 2**20:.0f} MB used ({parts or 'nothing yet'}), {mb(max(0, quota - usage['total']))} "
                            f"left; delete a dataset, model or job first")
    data_dir = Path(settings.DATA_DIR)
    if data_dir.exists() and shutil.disk_usage(data_dir).free < nbytes + MIN_FREE_BYTES:
        raise QuotaExceeded("the server is low on disk space; ask an admin to free some")
    return usage


@contextmanager
def reserve(user, nbytes: int, what: str, exclude_upload=None) -> Iterator[dict[str, int]]:
    """Check and hold: inside the block the user's row is locked and `nbytes` fit; create the
    row that accounts for them (upload session, dataset, model, try) before leaving it. An
    exception inside the block rolls the row back."""
    with transaction.atomic():
        _lock_user(user)
        yield check(user, nbytes, what, exclude_upload=exclude_upload)


@contextmanager
def user_lock(user) -> Iterator[None]:
    """The same per-user lock for limits that are not bytes (open uploads, active jobs)."""
    with transaction.atomic():
        _lock_user(user)
        yield
