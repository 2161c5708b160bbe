"""Project verbs: create, rename / set the quota, delete, and the members (add, change role,
remove). Every refusal is a ProjectError whose message is for the user; nothing changes then.

No data is lost: removing a member leaves what they made in the project (they still own it and
see it, the rule of webapp/projects/access.py); deleting a project moves its items (jobs,
datasets, sweeps, models) to their owners' personal space in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower

from webapp.accounts import audit
from webapp.projects.access import Role, role_of
from webapp.projects.models import Membership, Project

MAX_NAME = 100


@dataclass
class ProjectError(Exception):
    message: str
    status: int = 400

    def __str__(self) -> str:
        return self.message


def _clean_name(name) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise ProjectError("name: give the project a name")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ProjectError("name: control characters are not allowed")
    if len(name) > MAX_NAME:
        raise ProjectError(f"name: at most {MAX_NAME} characters")
    return name


def _clean_quota(value) -> int | None:
    if value in (None, ""):
        return None
    try:
        quota = int(str(value).strip())
    except (TypeError, ValueError):
        raise ProjectError("gpu_quota: give a whole number of GPUs (0 or more), or leave it empty for none") from None
    if not 0 <= quota <= 100_000:
        raise ProjectError("gpu_quota: give a whole number of GPUs from 0 to 100000, or leave it empty for none")
    return quota


def _name_taken(name: str, exclude=None) -> bool:
    qs = Project.objects.annotate(lname=Lower("name")).filter(lname=name.lower())
    return qs.exclude(pk=exclude).exists() if exclude else qs.exists()


def create_project(user, name, description: str = "") -> Project:
    """A new project; its creator is its first maintainer."""
    name = _clean_name(name)
    if _name_taken(name):
        raise ProjectError(f"name: a project called “{name}” exists already")
    try:
        with transaction.atomic():
            project = Project.objects.create(name=name, description=str(description or "")[:5000], created_by=user)
            Membership.objects.create(project=project, user=user, role=Role.MAINTAINER)
            audit.record(user, "project.create", project)
    except IntegrityError:  # the same name created at the same moment
        raise ProjectError(f"name: a project called “{name}” exists already") from None
    return project


def may_manage(user, project: Project) -> bool:
    return user.is_superuser or role_of(user, project.pk) == Role.MAINTAINER


def _check_manager(user, project: Project) -> None:
    if not may_manage(user, project):
        role = role_of(user, project.pk)
        raise ProjectError(f"only a maintainer of project “{project.name}” may do this"
                           + (f"; you are a {role}" if role else ""), status=403)


def update_project(user, project: Project, *, name=None, description=None, gpu_quota=...) -> Project:
    """Rename it or change its description (maintainers); its GPU quota is the operators' to set
    (staff with the `projects.change_project` permission, or a superuser), since it limits what
    the project takes from everyone."""
    if name is not None or description is not None:
        _check_manager(user, project)
    changes = {}
    if name is not None:
        changes["name"] = _clean_name(name)
        if _name_taken(changes["name"], exclude=project.pk):
            raise ProjectError(f"name: a project called “{changes['name']}” exists already")
    if description is not None:
        changes["description"] = str(description)[:5000]
    if gpu_quota is not ...:
        if not (user.is_superuser or (user.is_staff and user.has_perm("projects.change_project"))):
            raise ProjectError("gpu_quota: only an administrator may set a project's GPU quota", status=403)
        changes["gpu_quota"] = _clean_quota(gpu_quota)
    if not changes:
        return project
    try:
        with transaction.atomic():
            Project.objects.filter(pk=project.pk).update(**changes)
            audit.record(user, "project.update", project, **{k: v for k, v in changes.items() if k != "description"})
    except IntegrityError:
        raise ProjectError("name: a project with that name exists already") from None
    project.refresh_from_db()
    return project


def delete_project(user, project: Project) -> dict:
    """Delete the project; its items move to their owners' personal space (counts returned)."""
    from webapp.datasets.models import Dataset
    from webapp.hub.models import LocalModel
    from webapp.jobs.models import Job
    from webapp.sweeps.models import Sweep

    _check_manager(user, project)
    with transaction.atomic():
        moved = {name: model.objects.filter(project=project).update(project=None)
                 for name, model in (("jobs", Job), ("datasets", Dataset), ("sweeps", Sweep), ("models", LocalModel))}
        audit.record(user, "project.delete", project, moved=moved)
        project.delete()
    return moved


def _clean_username(username) -> str:
    return str(username or "").strip().replace("\x00", "\ufffd")[:150]  # PostgreSQL refuses NUL in a query


def _user_named(username):
    username = _clean_username(username)
    user = get_user_model().objects.filter(username=username, is_active=True).first() if username else None
    if user is None:
        raise ProjectError(f"username: there is no active user called “{username}”" if username
                           else "username: give the username of the person to add")
    return user


def _clean_role(role) -> str:
    if role not in Role.values:
        raise ProjectError(f"role: choose one of {', '.join(Role.values)}")
    return role


def add_member(user, project: Project, username, role=Role.MEMBER) -> Membership:
    _check_manager(user, project)
    role, member = _clean_role(role), _user_named(username)
    try:
        with transaction.atomic():
            m = Membership.objects.create(project=project, user=member, role=role)
            audit.record(user, "project.member.add", project, username=member.username, role=role)
    except IntegrityError:
        raise ProjectError(f"username: {member.username} is in the project already") from None
    return m


def _membership(project: Project, username) -> Membership:
    m = Membership.objects.select_related("user").filter(project=project, user__username=_clean_username(username)).first()
    if m is None:
        raise ProjectError(f"username: {username} is not a member of project “{project.name}”", status=404)
    return m


def _keep_a_maintainer(project: Project, m: Membership) -> None:
    """A project always keeps a maintainer (else nobody could manage it): the rows are locked so
    two maintainers stepping down at once cannot both succeed."""
    if m.role != Role.MAINTAINER:
        return
    rows = list(Membership.objects.select_for_update().filter(project=project, role=Role.MAINTAINER)
                .values_list("pk", flat=True))
    if rows == [m.pk]:
        raise ProjectError(f"{m.user.username} is the last maintainer of project “{project.name}”: make someone "
                           "else a maintainer first (or delete the project)", status=409)


def change_role(user, project: Project, username, role) -> Membership:
    _check_manager(user, project)
    role = _clean_role(role)
    with transaction.atomic():
        m = _membership(project, username)
        if role != Role.MAINTAINER:
            _keep_a_maintainer(project, m)
        Membership.objects.filter(pk=m.pk).update(role=role)
        audit.record(user, "project.member.role", project, username=m.user.username, role=role, was=m.role)
    m.role = role
    return m


def remove_member(user, project: Project, username) -> None:
    """Remove a member (a maintainer's verb; anyone may leave). What they made stays in the project."""
    with transaction.atomic():
        m = _membership(project, username)
        if m.user_id != user.pk:
            _check_manager(user, project)
        _keep_a_maintainer(project, m)
        m.delete()
        audit.record(user, "project.member.remove", project, username=m.user.username)
