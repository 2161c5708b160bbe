"""The one place that decides who may see or change a job or dataset."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
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


def may_write(user, obj, write: bool | str = True) -> bool:
    """May `user` change (write=True / "change") or delete (write="delete") `obj`?

    The owner may. Anyone else — staff included — needs the matching Django permission
    (`jobs.change_job`, `datasets.delete_dataset`, …) or to be a superuser: the staff flag
    alone lets one *see* everything (support, the admin), not change other users' work."""
    if not write or getattr(obj, "owner_id", None) == user.pk or user.is_superuser:
        return True
    action = "delete" if write == "delete" else "change"
    return user.has_perm(f"{obj._meta.app_label}.{action}_{obj._meta.model_name}")


def _check_write(user, obj, write):
    if not may_write(user, obj, write):
        action = "delete" if write == "delete" else "change"
        raise PermissionDenied(f"you may see this {obj._meta.verbose_name} but not {action} it: "
                               f"it belongs to {obj.owner.get_username()} and your account lacks the "
                               f"“{action} {obj._meta.verbose_name}” permission")
    return obj


def _get_for_user(queryset, model, pk):
    try:
        return queryset.get(pk=pk)
    except (model.DoesNotExist, ValidationError, ValueError, TypeError):
        raise Http404 from None


def get_job_for_user(user, pk, write: bool | str = False) -> Job:
    """The job if `user` may see it, else Http404 (never 403, so ids leak nothing).

    Staff see every job; writing (`write` True: cancel, retry; "delete") to another user's
    job needs the matching permission (may_write), else PermissionDenied (403: they can see it).
    """
    if not user.is_authenticated:
        raise Http404
    return _check_write(user, _get_for_user(jobs_for(user), Job, pk), write)


def get_dataset_for_user(user, pk, write: bool | str = False) -> Dataset:
    """The dataset if `user` may see it (owner, shared with them, staff), else Http404.

    write=True (rename, share) or "delete" needs the owner, or staff with the matching permission
    (403 without it); a user it is shared with gets 404 there.
    """
    if not user.is_authenticated:
        raise Http404
    return _check_write(user, _get_for_user(datasets_for(user, write=bool(write)), Dataset, pk), write)
