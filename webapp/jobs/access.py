"""The one place that decides who may see or change a job or dataset."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import Http404

from webapp.datasets.models import Dataset
from webapp.jobs.models import Job


def jobs_for(user):
    qs = Job.objects.select_related("owner", "dataset")
    return qs if user.is_staff else qs.filter(owner=user)


def datasets_for(user, write: bool = False):
    """Datasets `user` may see (own + shared with them) or, with write=True, change (own)."""
    qs = Dataset.objects.select_related("owner")
    if user.is_staff:
        return qs
    if write:
        return qs.filter(owner=user)
    return qs.filter(Q(owner=user) | Q(shared_with=user)).distinct()


def _get_for_user(queryset, model, pk):
    try:
        return queryset.get(pk=pk)
    except (model.DoesNotExist, ValidationError, ValueError, TypeError):
        raise Http404 from None


def get_job_for_user(user, pk, write: bool = False) -> Job:
    """The job if `user` may see it, else Http404 (never 403, so ids leak nothing).

    Reading and writing follow the same rule today (owner or staff); `write` marks the
    callers that change state, for when sharing adds read-only access.
    """
    if not user.is_authenticated:
        raise Http404
    return _get_for_user(jobs_for(user), Job, pk)


def get_dataset_for_user(user, pk, write: bool = False) -> Dataset:
    """The dataset if `user` may see it (owner, shared with them, staff), else Http404.

    write=True (rename, share, delete) needs the owner or staff; a user it is shared with
    gets 404 there too.
    """
    if not user.is_authenticated:
        raise Http404
    return _get_for_user(datasets_for(user, write=write), Dataset, pk)
