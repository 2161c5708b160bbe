"""JSON API of projects and their members: the same services and access rule as the pages."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from webapp.api import errors as api_errors
from webapp.api import schema as docs
from webapp.api.views import Api
from webapp.projects import services
from webapp.projects.access import Role, role_of, visible_projects
from webapp.projects.models import Membership
from webapp.projects.views import get_project_for_user


class ProjectCreate(serializers.Serializer):
    name = serializers.CharField(min_length=1, max_length=services.MAX_NAME)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class ProjectUpdate(serializers.Serializer):
    name = serializers.CharField(required=False, min_length=1, max_length=services.MAX_NAME)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    gpu_quota = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=100_000,
                                         help_text="administrators only; null: no quota")


class MemberAdd(serializers.Serializer):
    username = serializers.CharField(min_length=1, max_length=150)
    role = serializers.ChoiceField(choices=Role.values, default=Role.MEMBER)


class MemberUpdate(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.values)


def _refused(exc: services.ProjectError) -> Response:
    field, _, _ = exc.message.partition(":")
    errors = {field: exc.message} if field in ("name", "gpu_quota", "username", "role") else None
    return api_errors.error(exc.message, exc.status, **({"errors": errors} if errors else {}))


def _detail(project, user) -> dict:
    members = Membership.objects.filter(project=project).select_related("user")
    return {**project.to_dict(role_of(user, project.pk)), "members": [m.to_dict() for m in members]}


class ProjectList(Api):
    @extend_schema(operation_id="projects_list", responses=docs.responses({200: docs.ProjectListBody}),
                   description="The projects you belong to, with your role in each (staff: every project).")
    def get(self, request):
        roles = dict(Membership.objects.filter(user=request.user).values_list("project_id", "role"))
        return Response({"projects": [p.to_dict(roles.get(p.pk)) for p in visible_projects(request.user)[:1000]]})

    @extend_schema(operation_id="projects_create", request=ProjectCreate,
                   responses=docs.responses({201: docs.ProjectDetail}, *docs.BODY),
                   description="Create a project; you become its maintainer. Names are unique (ignoring case).")
    def post(self, request):
        v = api_errors.validated(ProjectCreate, request.data)
        try:
            project = services.create_project(request.user, v["name"], v.get("description", ""))
        except services.ProjectError as exc:
            return _refused(exc)
        return Response(_detail(project, request.user), status=status.HTTP_201_CREATED)


class ProjectDetail(Api):
    @extend_schema(operation_id="projects_retrieve", responses=docs.responses({200: docs.ProjectDetail}, 404),
                   description="One project and its members.")
    def get(self, request, pk):
        return Response(_detail(get_project_for_user(request.user, pk), request.user))

    @extend_schema(operation_id="projects_update", request=ProjectUpdate,
                   responses=docs.responses({200: docs.ProjectDetail}, *docs.BODY, 404),
                   description="Rename it or change its description (maintainers); set its GPU quota "
                               "(administrators).")
    def patch(self, request, pk):
        project = get_project_for_user(request.user, pk)
        v = api_errors.validated(ProjectUpdate, request.data)
        try:
            project = services.update_project(request.user, project, name=v.get("name"),
                                              description=v.get("description"), gpu_quota=v.get("gpu_quota", ...))
        except services.ProjectError as exc:
            return _refused(exc)
        return Response(_detail(project, request.user))

    @extend_schema(operation_id="projects_destroy", responses=docs.responses({204: None}, 404),
                   description="Delete the project (maintainers). Nothing in it is lost: its jobs, datasets, "
                               "sweeps and models move to their owners' personal space.")
    def delete(self, request, pk):
        try:
            services.delete_project(request.user, get_project_for_user(request.user, pk))
        except services.ProjectError as exc:
            return _refused(exc)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberList(Api):
    @extend_schema(operation_id="projects_members_list", responses=docs.responses({200: docs.MemberListBody}, 404),
                   description="The project's members and their roles.")
    def get(self, request, pk):
        project = get_project_for_user(request.user, pk)
        return Response({"members": [m.to_dict() for m in project.memberships.select_related("user")]})

    @extend_schema(operation_id="projects_members_create", request=MemberAdd,
                   responses=docs.responses({201: docs.Member}, *docs.BODY, 404),
                   description="Add a user by their exact username, with a role: viewer (sees and downloads), "
                               "member (also creates, and cancels their own), maintainer (manages anything in "
                               "the project and its members). Maintainers only.")
    def post(self, request, pk):
        project = get_project_for_user(request.user, pk)
        v = api_errors.validated(MemberAdd, request.data)
        try:
            m = services.add_member(request.user, project, v["username"], v["role"])
        except services.ProjectError as exc:
            return _refused(exc)
        return Response(m.to_dict(), status=status.HTTP_201_CREATED)


class MemberDetail(Api):
    @extend_schema(operation_id="projects_members_update", request=MemberUpdate,
                   responses=docs.responses({200: docs.Member}, *docs.BODY, 404, 409),
                   description="Change a member's role (maintainers). 409 for the last maintainer.")
    def patch(self, request, pk, username):
        project = get_project_for_user(request.user, pk)
        v = api_errors.validated(MemberUpdate, request.data)
        try:
            m = services.change_role(request.user, project, username, v["role"])
        except services.ProjectError as exc:
            return _refused(exc)
        return Response(m.to_dict())

    @extend_schema(operation_id="projects_members_destroy", responses=docs.responses({204: None}, 404, 409),
                   description="Remove a member (maintainers; anyone may remove themselves). What they made "
                               "stays in the project. 409 for the last maintainer.")
    def delete(self, request, pk, username):
        try:
            services.remove_member(request.user, get_project_for_user(request.user, pk), username)
        except services.ProjectError as exc:
            return _refused(exc)
        return Response(status=status.HTTP_204_NO_CONTENT)
