"""The one place that decides who may see or change a job or dataset (the project roles are one
rule, webapp/projects/access.py, which every helper here and in sweeps/hub applies)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import Http404

from webapp.datasets.models import Dataset
from webapp.jobs.models import Job
from webapp.projects import access as projects


def jobs_for(user):
    """Jobs `user` may see: their own, their projects' (any role); staff: all."""
    return projects.visible(user, Job.objects.select_related("owner", "dataset", "project"))


def datasets_for(user, write: bool = False):
    """Datasets `user` may see (own, their projects', shared with them) or, with write=True, the
    candidates for a change (own, their projects': may_write then decides by role, 403 for a
    viewer). A user a dataset is shared with by name never changes it (404, as before projects)."""
    qs = Dataset.objects.select_related("owner", "project")
    if write:
        return projects.visible(user, qs)
    shared = Q(pk__in=Dataset.shared_with.through.objects.filter(user_id=user.pk).values("dataset_id"))
    return projects.visible(user, qs, also=shared)


def datasets_for_job(user, project):
    """Datasets a job (or sweep) of `user` in `project` may train on: for a personal job every one
    they may see; for a project job their personal ones, those shared with them and the
    project's — never another project's (their own there included), whose data this project's
    members would then see in the job's samples."""
    readable = datasets_for(user)
    if project is None:
        return readable
    return readable.filter(Q(owner_id=user.pk, project__isnull=True) | Q(project_id=project.pk) | Q(
        pk__in=Dataset.shared_with.through.objects.filter(user_id=user.pk).values("dataset_id")))


def may_write(user, obj, write: bool | str = True) -> bool:
    """May `user` change (write=True / "change") or delete (write="delete") `obj`?

    The owner may, and a maintainer of the project it belongs to. Anyone else — staff included —
    needs the matching Django permission (`jobs.change_job`, `datasets.delete_dataset`, …) or to
    be a superuser: the staff flag alone lets one *see* everything (support, the admin), not
    change other users' work; a project viewer or member sees their teammates' items, no more."""
    if not write or getattr(obj, "owner_id", None) == user.pk or user.is_superuser:
        return True
    if projects.manages(user, obj):
        return True
    action = "delete" if write == "delete" else "change"
    return user.has_perm(f"{obj._meta.app_label}.{action}_{obj._meta.model_name}")


def _check_write(user, obj, write):
    if not may_write(user, obj, write):
        raise PermissionDenied(projects.refusal(user, obj, "delete" if write == "delete" else "change"))
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
    """The dataset if `user` may see it (owner, project member, shared with them, staff), else Http404.

    write=True (rename, share) or "delete" needs the owner, a maintainer of its project, or staff
    with the matching permission (403 without it); a user it is shared with gets 404 there.
    """
    if not user.is_authenticated:
        raise Http404
    return _check_write(user, _get_for_user(datasets_for(user, write=bool(write)), Dataset, pk), write)
