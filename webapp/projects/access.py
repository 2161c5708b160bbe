"""The one project rule: who may do what with an item (job, dataset, sweep, model) of a project.

An item with no project is its owner's personal space (as before projects). In a project:
- viewer: sees and downloads the project's items;
- member: also creates items in it, and cancels / changes their own;
- maintainer: changes and deletes anything in the project, and manages its members.
The owner of an item may always change their own, whatever their role now (a member removed
from a project still sees and manages what they made; the project keeps it too). Staff see
everything and change others' items only with the matching permission (webapp/jobs/access.py).

Every access helper (jobs, datasets, sweeps, hub) builds its querysets with `visible()` and
checks writes with `manages()`: pages, the API, the job socket and downloads all go through them.
"""

from __future__ import annotations

from django.db.models import Q

from webapp.projects.models import Membership, Project

Role = Membership.Role
RANK = {Role.VIEWER: 1, Role.MEMBER: 2, Role.MAINTAINER: 3}
CREATORS = (Role.MEMBER, Role.MAINTAINER)


def project_ids(user, roles=tuple(RANK)):
    """Subquery: the ids of the projects where `user` has one of `roles`."""
    return Membership.objects.filter(user_id=user.pk, role__in=list(roles)).values("project_id")


def visible(user, queryset, also: Q | None = None):
    """The items of `queryset` that `user` may see: their own, their projects' (any role), `also`
    (a dataset shared with them, a registered model); staff: all. A subquery, not a join, so the
    rows stay distinct and the list's ordering and limits work as before."""
    if user.is_staff:
        return queryset
    rule = Q(owner_id=user.pk) | Q(project__in=project_ids(user))
    return queryset.filter(rule | also if also is not None else rule)


def role_of(user, project_id) -> str | None:
    """`user`'s role in the project, or None (not a member, or no project)."""
    if not project_id or not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(project_id=project_id, user_id=user.pk).values_list("role", flat=True).first()


def manages(user, obj) -> bool:
    """Whether `user` is a maintainer of the project `obj` belongs to (False for personal items)."""
    return role_of(user, getattr(obj, "project_id", None)) == Role.MAINTAINER


def member_of(user, obj) -> bool:
    """Whether `user` has any role in the project `obj` belongs to (private downloads such as a
    cancelled job's checkpoint: the owner's and their teammates', not staff's)."""
    return role_of(user, getattr(obj, "project_id", None)) is not None


def may_create_in(user, project: Project | None) -> bool:
    """Personal space: anyone signed in. A project: its members and maintainers."""
    return project is None or role_of(user, project.pk) in CREATORS


def creatable_projects(user):
    """The projects `user` may create items in (the forms' project selector)."""
    return Project.objects.filter(pk__in=project_ids(user, CREATORS))


def visible_projects(user):
    """The projects `user` belongs to (staff: all)."""
    return Project.objects.all() if user.is_staff else Project.objects.filter(pk__in=project_ids(user))


def refusal(user, obj, action: str) -> str:
    """Why `user` may see `obj` but not `action` it, in the words of the rule."""
    what = obj._meta.verbose_name
    owner = obj.owner.get_username() if getattr(obj, "owner_id", None) else "the server"
    role = role_of(user, getattr(obj, "project_id", None))
    if role is not None:
        return (f"you may see this {what} but not {action} it: it belongs to {owner} and you are a {role} of "
                f"project “{obj.project.name}” (a maintainer may {action} anyone's)")
    return (f"you may see this {what} but not {action} it: it belongs to {owner} and your account lacks the "
            f"“{action} {what}” permission")


def resolve_for_create(user, value) -> tuple[Project | None, str]:
    """The project a form or API request names for a new item, and an error ("" when fine):
    empty means personal space; otherwise a project where `user` is a member or maintainer."""
    value = str(value or "").strip()
    if not value:
        return None, ""
    project = visible_projects(user).filter(pk=value).first() if _is_uuid(value) else None
    if project is None:
        return None, "no such project"
    if not may_create_in(user, project):
        return None, (f"you are a {role_of(user, project.pk) or 'visitor'} of project “{project.name}”: "
                      "only its members and maintainers may add to it")
    return project, ""


def project_filter(queryset, value: str):
    """A list's project filter: "" all, "personal" the items of no project, or a project's id
    (the queryset is already what the user may see)."""
    value = str(value or "").strip()
    if value == "personal":
        return queryset.filter(project__isnull=True)
    if _is_uuid(value):
        return queryset.filter(project_id=value)
    return queryset


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
