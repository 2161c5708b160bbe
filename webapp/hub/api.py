"""JSON API of the pretrained models a user may pick (registered ones and their own uploads),
and the upload of a save_pretrained ZIP: the same service as the Models page, token auth enough."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from webapp.api import errors as api_errors
from webapp.api import schema as docs
from webapp.api.views import Api
from webapp.datasets import services as dataset_services
from webapp.datasets.uploads import upload_too_large_message
from webapp.datasets.validation import DatasetError
from webapp.hub import services
from webapp.hub.models import LocalModel
from webapp.projects.access import resolve_for_create


class ModelUpload(serializers.Serializer):
    file = serializers.FileField(required=False, help_text="the ZIP of a save_pretrained folder "
                                                           "(config.json and safetensors weights)")
    upload = serializers.UUIDField(required=False, help_text="or the id of a completed chunked upload")
    name = serializers.CharField(min_length=1, max_length=100, help_text="letters, digits, '.', '_' and '-'; "
                                                                        "jobs pick it as local:NAME")
    task = serializers.ChoiceField(choices=LocalModel.Task.choices)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    project = serializers.UUIDField(required=False, allow_null=True,
                                    help_text="a project where you are a member or maintainer; default: personal space")


class ModelFromUpload(ModelUpload):
    file = None
    upload = serializers.UUIDField(help_text="the id of a completed chunked upload (/api/uploads/)")


class ModelList(Api):
    @extend_schema(operation_id="models_list", responses=docs.responses({200: docs.ModelListBody}),
                   description="Local models: use `reference` (local:NAME) as model_config.model of a "
                               "Hugging Face job.")
    def get(self, request):
        return Response({"models": [m.to_dict() for m in services.models_for(request.user)]})

    @extend_schema(
        operation_id="models_create",
        request={"multipart/form-data": ModelUpload, "application/json": ModelFromUpload},
        responses=docs.responses({201: docs.LocalModel}, *docs.BODY, 404, 413),
        description="Upload a pretrained Hugging Face model: the ZIP of a save_pretrained folder, as `file` "
                    "(multipart) or as the `upload` id of a completed chunked upload. The ZIP's directory is "
                    "checked at once (a refused ZIP gets 400 and is not kept); a worker then unpacks it: the "
                    "model is `extracting`, then `ready` (or `failed`, with `error`). Poll GET /api/models/.")
    def post(self, request):
        d = request.data  # parses the body; the size check runs while streaming
        if getattr(request._request, "upload_too_large", False):
            return api_errors.error(upload_too_large_message(), status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        v = api_errors.validated(ModelUpload, d)
        upload = None
        try:
            if v.get("upload"):
                try:
                    upload = dataset_services.upload_for(request.user, v["upload"])
                except DatasetError as exc:
                    return api_errors.error(str(exc), status.HTTP_404_NOT_FOUND)
            project, project_error = resolve_for_create(request.user, v.get("project"))
            if project_error:
                raise services.HubError(f"project: {project_error}")
            model = services.upload_model(request.user, v.get("file"), upload=upload, name=v["name"], project=project,
                                          task=v["task"], description=v.get("description", ""))
        except services.HubError as exc:
            if upload is not None:
                dataset_services.abort_upload(upload)  # a refused ZIP leaves nothing behind
            return api_errors.error(str(exc))
        return Response(model.to_dict(), status=status.HTTP_201_CREATED)
