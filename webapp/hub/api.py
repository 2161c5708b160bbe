"""JSON API of the pretrained models a user may pick (registered ones and their own uploads)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from webapp.api.views import Api
from webapp.hub.services import models_for


class ModelList(Api):
    @extend_schema(operation_id="models_list", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        """Local models: use `reference` (local:NAME) as model_config.model of a Hugging Face job."""
        return Response({"models": [m.to_dict() for m in models_for(request.user)]})
