"""Project pages: the list (and create), one project (its members and items; members managed
by maintainers), and the forms' POST verbs."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from webapp.projects import services
from webapp.projects.access import Role, role_of, visible_projects
from webapp.projects.models import Membership, Project

ITEMS_SHOWN = 100


def get_project_for_user(user, pk) -> Project:
    """The project if `user` belongs to it (staff: any), else Http404 (ids leak nothing)."""
    if not user.is_authenticated:
        raise Http404
    try:
        return visible_projects(user).get(pk=pk)
    except (Project.DoesNotExist, ValidationError, ValueError, TypeError):
        raise Http404 from None


def project_list(request):
    if request.method == "POST":
        try:
            project = services.create_project(request.user, request.POST.get("name", ""),
                                              request.POST.get("description", ""))
        except services.ProjectError as exc:
            return render(request, "projects/list.html", _list_context(request, error=str(exc)), status=exc.status)
        messages.success(request, f"Project “{project.name}” created; you are its maintainer.")
        return redirect("projects:detail", pk=project.pk)
    return render(request, "projects/list.html", _list_context(request))


def _list_context(request, error: str = "") -> dict:
    roles = dict(Membership.objects.filter(user=request.user).values_list("project_id", "role"))
    rows = [{"project": p, "role": roles.get(p.pk)} for p in visible_projects(request.user)[:500]]
    return {"rows": rows, "error": error, "values": request.POST if error else {}}


def project_detail(request, pk):
    from webapp.datasets.models import Dataset
    from webapp.hub.models import LocalModel
    from webapp.jobs.models import Job
    from webapp.sweeps.models import Sweep

    project = get_project_for_user(request.user, pk)
    role = role_of(request.user, project.pk)
    items = {name: model.objects.filter(project=project).select_related("owner")[:ITEMS_SHOWN]
             for name, model in (("jobs", Job), ("datasets", Dataset), ("sweeps", Sweep), ("models", LocalModel))}
    return render(request, "projects/detail.html", {
        "project": project, "role": role, "manages": services.may_manage(request.user, project),
        "sets_quota": request.user.is_superuser or (request.user.is_staff and request.user.has_perm(
            "projects.change_project")),
        "members": project.memberships.select_related("user"), "roles": Role.choices, **items})


def _act(request, pk, verb, done: str):
    project = get_project_for_user(request.user, pk)
    try:
        verb(project)
    except services.ProjectError as exc:
        if exc.status == 403:  # they may see the project, not manage it: the 403 page, as for jobs
            raise PermissionDenied(str(exc)) from None
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    return project


@require_POST
def project_edit(request, pk):
    def verb(project):
        quota = request.POST["gpu_quota"] if "gpu_quota" in request.POST else ...
        fields = {k: request.POST[k] for k in ("name", "description") if k in request.POST}
        services.update_project(request.user, project, gpu_quota=quota, **fields)

    return redirect("projects:detail", pk=_act(request, pk, verb, "Project saved.").pk)


@require_POST
def project_delete(request, pk):
    project = get_project_for_user(request.user, pk)
    try:
        moved = services.delete_project(request.user, project)
    except services.ProjectError as exc:
        raise PermissionDenied(str(exc)) from None
    kept = ", ".join(f"{n} {k[:-1] if n == 1 else k}" for k, n in moved.items() if n)
    messages.success(request, f"Project “{project.name}” deleted." + (
        f" Its items ({kept}) are now in their owners' personal space." if kept else ""))
    return redirect("projects:list")


@require_POST
def member_add(request, pk):
    username, role = request.POST.get("username", "").strip(), request.POST.get("role", Role.MEMBER)
    project = _act(request, pk, lambda p: services.add_member(request.user, p, username, role),
                   f"{username} added as {role}.")
    return redirect("projects:detail", pk=project.pk)


@require_POST
def member_change(request, pk, username):
    """Change a member's role, or (action=remove) remove them; a member may remove themselves."""
    if request.POST.get("action") == "remove":
        project = _act(request, pk, lambda p: services.remove_member(request.user, p, username),
                       f"{username} removed; what they made stays in the project.")
        if role_of(request.user, project.pk) is None and not request.user.is_staff:
            return redirect("projects:list")  # they left
    else:
        role = request.POST.get("role", "")
        project = _act(request, pk, lambda p: services.change_role(request.user, p, username, role),
                       f"{username} is now {role}.")
    return redirect("projects:detail", pk=project.pk)
