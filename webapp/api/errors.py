"""One error shape for the whole API, and the parsing rules every API view shares.

Every refusal under /api/ is JSON with a `detail` message written for the user: DRF's own
refusals (401, 403, 404, 405, 415, 429: `{"detail": message}`), a body that is not a JSON object,
URLs that match nothing (`handler404` in webapp/urls.py answers JSON for /api/ paths), and the
views' own refusals, which add `error` (the same message, read by the pages' scripts and older
clients) and, for refused fields, `errors` (`{field: message}`).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import SuspiciousOperation, TooManyFieldsSent
from django.http import Http404, JsonResponse
from django.views.defaults import page_not_found, server_error
from rest_framework import exceptions, parsers, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

API_PREFIX = "/api/"


def body(message: str, errors: dict | None = None) -> dict:
    out = {"detail": message, "error": message}
    if errors:
        out["errors"] = errors
    return out


def error(message: str, code: int = status.HTTP_400_BAD_REQUEST, errors: dict | None = None, **extra) -> Response:
    return Response({**body(message, errors), **extra}, status=code)


class Invalid(exceptions.APIException):
    """A request whose fields were refused: 400 with one message per field."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "invalid request"

    def __init__(self, errors: dict[str, str], message: str = "invalid request"):
        super().__init__(message)
        self.errors = errors


def flatten(errors, prefix: str = "") -> dict[str, str]:
    """DRF's nested error lists as `{"field": "message"}` (nested fields as `a.b`)."""
    if isinstance(errors, dict):
        out = {}
        for key, value in errors.items():
            name = "request" if key == "non_field_errors" else str(key)
            out.update(flatten(value, f"{prefix}{name}" if not prefix else f"{prefix}.{name}"))
        return out
    if isinstance(errors, list) and errors and all(not isinstance(e, (dict, list)) for e in errors):
        return {prefix or "request": " ".join(str(e) for e in errors)}
    if isinstance(errors, list):
        out = {}
        for i, value in enumerate(errors):
            out.update(flatten(value, f"{prefix}.{i}" if prefix else str(i)))
        return out
    return {prefix or "request": str(errors)}


def validated(serializer_cls: type[serializers.Serializer], data) -> dict:
    """The request's fields checked by `serializer_cls`, or a 400 naming each bad field."""
    s = serializer_cls(data=data)
    if not s.is_valid():
        raise Invalid(flatten(s.errors))
    return s.validated_data


class ObjectJSONParser(parsers.JSONParser):
    """JSON bodies must be objects: an array, string or number is a 400 with a clear message,
    never a crash in a view that expects named fields."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if not isinstance(data, dict):
            raise exceptions.ParseError(
                f"the request body must be a JSON object with named fields, not a JSON {_json_type(data)}")
        return data


def _json_type(value) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


PARSERS = [ObjectJSONParser, parsers.MultiPartParser, parsers.FormParser]


def exception_handler(exc, context):
    """DRF's handler, with every body in the one error shape."""
    if isinstance(exc, Invalid):
        return Response(body(str(exc.detail), exc.errors), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("not found: no such object, or it is not yours")
    if isinstance(exc, TooManyFieldsSent):
        return Response(body(f"the request body has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields"),
                        status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, SuspiciousOperation):  # a body Django refuses to parse: still the API's JSON shape
        return Response(body("the request body could not be read"), status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and set(data) == {"detail"}:
        response.data = {"detail": str(data["detail"])}
    elif isinstance(data, (dict, list)):
        response.data = body("invalid request", flatten(data))
    return response


def not_found(request, exception=None):
    """The project's 404 handler: JSON under /api/, the HTML page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "not found: no such URL or object under /api/; see /api/schema/"}, status=404)
    return page_not_found(request, exception)


def server_failure(request):
    """The project's 500 handler: JSON under /api/ (the traceback goes to the log), HTML elsewhere."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "internal error; the administrators can find it in the server log"},
                            status=500)
    return server_error(request)
