"""Who may see an ingest failure notice: its owner only (staff included in "others": the notice
is a message to the uploader, not an object to administer). Same shape as webapp/jobs/access.py,
which decides for jobs and datasets."""

from __future__ import annotations

from webapp.datasets.models import IngestFailure
from webapp.jobs.access import _get_for_user


def ingest_failures_for(user):
    if not user.is_authenticated:
        return IngestFailure.objects.none()
    return IngestFailure.objects.select_related("owner").filter(owner=user)


def get_ingest_failure_for_user(user, pk) -> IngestFailure:
    """The failure notice if `user` uploaded the file, else Http404 (never 403)."""
    return _get_for_user(ingest_failures_for(user), IngestFailure, pk)
