"""Who may see or change a sweep: the same rule as jobs (webapp/jobs/access.py, with the project
roles of webapp/projects/access.py)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404

from webapp.jobs.access import _check_write  # the one rule (may_write) and wording of its 403
from webapp.projects import access as projects
from webapp.sweeps.models import Sweep


def sweeps_for(user):
    return projects.visible(user, Sweep.objects.select_related("owner", "dataset", "project"))


def get_sweep_for_user(user, pk, write: bool | str = False) -> Sweep:
    """The sweep if `user` may see it (owner, project member, staff), else Http404 (never 403, so
    ids leak nothing); changing another user's sweep needs to be a maintainer of its project or
    the `sweeps.change_sweep` permission (403)."""
    if not user.is_authenticated:
        raise Http404
    try:
        sweep = sweeps_for(user).get(pk=pk)
    except (Sweep.DoesNotExist, ValidationError, ValueError, TypeError):
        raise Http404 from None
    return _check_write(user, sweep, write)
