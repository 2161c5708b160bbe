"""tus 1.0 resumable uploads (core, creation, termination) on the chunked upload sessions.

Standard clients (tus-js-client in the page, tuspy, the CLI) speak this protocol; underneath it
is the same `UploadSession` as the older chunked API: `start_upload` creates it (size limit,
quota, free disk), `append_chunk` appends in order, `abort_upload` removes it, and a complete
upload becomes a dataset through `create_dataset(upload=...)`. Nothing here checks quotas itself.

    OPTIONS /api/uploads/tus/       discovery: Tus-Version, Tus-Extension, Tus-Max-Size
    POST    /api/uploads/tus/       Upload-Length + Upload-Metadata (filename required) -> 201 Location
    HEAD    /api/uploads/tus/<id>/  Upload-Offset, Upload-Length, Upload-Metadata
    PATCH   /api/uploads/tus/<id>/  Content-Type: application/offset+octet-stream, Upload-Offset
    DELETE  /api/uploads/tus/<id>/  termination

A PATCH body must fit in one request (`TRAINYARD_MAX_REQUEST_MB`: Daphne queues a whole body in
memory before Django sees it), so clients send chunks, e.g. 8 MB; a PATCH is appended in pieces of
`TRAINYARD_UPLOAD_CHUNK_MB`, each committed, so the offset a client resumes from is never lost.

The metadata may carry the dataset's settings (`name`, `description`, `kind` and the kind's
options, as in the upload form); with `create_dataset` set (any value but "0"/"false") the PATCH that
completes the upload creates the dataset and answers its id in `Trainyard-Dataset`. Otherwise the
client POSTs `/api/datasets/` (or the page's form) with `upload=<id>` as for a chunked upload.
With `create_dataset`, the POST refuses (400, before any byte is sent) a metadata key that is
neither a dataset field nor a transport key (`filename`, `filetype`), and, when `kind` is given,
any option the kind refuses; without it the metadata is only kept (the dataset's fields come
with the later POST).
"""

from __future__ import annotations

import base64
import binascii
import re

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from drf_spectacular.utils import extend_schema
from rest_framework.views import APIView

from webapp.datasets import services
from webapp.datasets.models import UploadSession
from webapp.datasets.validation import DatasetError
from webapp.datasets.views import UPLOAD_OPTIONS

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,termination"
OFFSET_TYPE = "application/offset+octet-stream"
METADATA_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAX_METADATA_PAIRS = 50
MAX_METADATA_VALUE = 10_000
DATASET_FIELDS = ("name", "description", "kind", *UPLOAD_OPTIONS)
# Metadata keys that describe the transfer, not the dataset (tus-js-client sends filetype).
TRANSPORT_KEYS = ("filename", "filetype", "create_dataset", "project")


class TusError(Exception):
    def __init__(self, message: str, status: int = 400, **headers: str):
        super().__init__(message)
        self.status, self.headers = status, headers


def _error(exc: TusError) -> HttpResponse:
    response = JsonResponse({"error": str(exc)}, status=exc.status)
    for name, value in exc.headers.items():
        response[name.replace("_", "-")] = value
    return response


def parse_metadata(header: str) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64(value)` pairs (a key alone: empty value)."""
    meta: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, encoded = pair.partition(" ")
        if not METADATA_KEY.fullmatch(key) or key in meta or " " in encoded.strip():
            raise TusError(f"Upload-Metadata: {key[:64]!r} is not a valid or unique key")
        try:
            meta[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise TusError(f"Upload-Metadata: the value of {key!r} is not base64 of UTF-8 text") from None
        if len(meta[key]) > MAX_METADATA_VALUE or len(meta) > MAX_METADATA_PAIRS:
            raise TusError("Upload-Metadata is too large")
    return meta


def format_metadata(meta: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in meta.items())


def _int_header(request, name: str) -> int:
    value = request.headers.get(name)
    if value is None or not value.isdigit():
        raise TusError(f"send the {name} header as a whole number of bytes")
    return int(value)


def _status_of(exc: DatasetError) -> int:
    """Quota and rate refusals may carry their own status (429); anything else is bad input."""
    status = getattr(exc, "status", 400)
    return status if isinstance(status, int) and 400 <= status < 500 else 400


@method_decorator(login_not_required, name="dispatch")
class TusBase(APIView):
    """Token or session auth like the rest of the API (the page sends its CSRF token as a header);
    OPTIONS is open so that clients can discover the server before signing in."""

    parser_classes = []  # PATCH bodies are raw bytes, read as a stream

    def get_permissions(self):
        return [] if self.request.method == "OPTIONS" else super().get_permissions()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        version = request.headers.get("Tus-Resumable")
        if request.method != "OPTIONS" and version is not None and version != TUS_VERSION:
            raise _VersionMismatch()  # a missing header is tolerated: tus requires 412 only for another version

    def handle_exception(self, exc):
        if isinstance(exc, _VersionMismatch):
            return _error(TusError(f"this server speaks tus {TUS_VERSION}: send Tus-Resumable: {TUS_VERSION}",
                                   412, Tus_Version=TUS_VERSION))
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Tus-Resumable"] = TUS_VERSION
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(exclude=True)
    def options(self, request, *args, **kwargs):
        response = HttpResponse(status=204)
        response["Tus-Version"] = TUS_VERSION
        response["Tus-Extension"] = EXTENSIONS
        response["Tus-Max-Size"] = str(settings.MAX_UPLOAD_BYTES)
        response["Trainyard-Chunk-Bytes"] = str(settings.UPLOAD_CHUNK_BYTES)  # what clients should PATCH at once
        return response


class _VersionMismatch(Exception):
    pass


class TusCreate(TusBase):
    throttle_scope = "upload"  # creating an upload (webapp/throttles.py)

    @extend_schema(exclude=True)
    def post(self, request):
        try:
            if "Upload-Defer-Length" in request.headers:
                raise TusError("Upload-Defer-Length is not supported: send Upload-Length")
            size = _int_header(request, "Upload-Length")
            if size > settings.MAX_UPLOAD_BYTES:
                raise TusError(f"the file is larger than the {settings.MAX_UPLOAD_BYTES // 2**20} MB upload limit", 413)
            meta = parse_metadata(request.headers.get("Upload-Metadata", ""))
            if not meta.get("filename", "").strip():
                raise TusError("Upload-Metadata needs the file's name: filename <base64>")
            if _wants_dataset(meta):
                _check_dataset_metadata(meta)
            try:
                session = services.start_upload(request.user, meta["filename"], size)
            except DatasetError as exc:
                raise TusError(str(exc), _status_of(exc)) from None
        except TusError as exc:
            return _error(exc)
        session.metadata = meta
        session.save(update_fields=["metadata"])
        response = HttpResponse(status=201)
        response["Location"] = request.build_absolute_uri(f"{request.path.rstrip('/')}/{session.pk}/")
        response["Upload-Offset"] = "0"
        return response


class TusUpload(TusBase):
    def _session(self, pk) -> UploadSession:
        try:
            return UploadSession.objects.get(pk=pk, owner=self.request.user)
        except (UploadSession.DoesNotExist, ValidationError, ValueError):
            raise TusError("no such upload (finished, removed after 24 h, or never started)", 404) from None

    @extend_schema(exclude=True)
    def head(self, request, pk):
        try:
            session = self._session(pk)
        except TusError as exc:
            return HttpResponse(status=exc.status)  # a HEAD answer has no body
        response = HttpResponse(status=200)
        response["Upload-Offset"] = str(session.received)
        response["Upload-Length"] = str(session.size)
        if session.metadata:
            response["Upload-Metadata"] = format_metadata(session.metadata)
        return response

    @extend_schema(exclude=True)
    def patch(self, request, pk):
        try:
            session = self._session(pk)
            if request.content_type != OFFSET_TYPE:
                raise TusError(f"send the bytes as Content-Type: {OFFSET_TYPE}", 415)
            offset, length = _int_header(request, "Upload-Offset"), _int_header(request, "Content-Length")
            if offset != session.received:
                raise TusError(f"the upload is at byte {session.received}, not {offset}", 409,
                               Upload_Offset=str(session.received))
            if length > settings.MAX_REQUEST_BYTES:
                raise TusError(f"send at most {settings.MAX_REQUEST_BYTES // 2**20} MB per PATCH "
                               f"(e.g. chunks of {settings.UPLOAD_CHUNK_BYTES // 2**20} MB)", 413)
            if offset + length > session.size:
                raise TusError(f"the chunk ends at byte {offset + length}, past Upload-Length {session.size}")
            session = self._append(session, offset, length)
        except TusError as exc:
            return _error(exc)
        response = HttpResponse(status=204)
        response["Upload-Offset"] = str(session.received)
        if session.complete and _wants_dataset(session.metadata):
            return self._create_dataset(request, session, response)
        return response

    def _append(self, session: UploadSession, offset: int, length: int) -> UploadSession:
        """The body in pieces of UPLOAD_CHUNK_BYTES, each committed by append_chunk."""
        end = offset + length
        while offset < end:
            piece = min(settings.UPLOAD_CHUNK_BYTES, end - offset)
            try:
                session = services.append_chunk(session, offset, self.request._request, piece)
            except services.UploadOutOfOrder as exc:  # a concurrent PATCH got there first
                raise TusError(str(exc), 409, Upload_Offset=str(exc.received)) from None
            except DatasetError as exc:
                raise TusError(str(exc), _status_of(exc)) from None
            offset += piece
        return session

    def _create_dataset(self, request, session: UploadSession, response: HttpResponse) -> HttpResponse:
        from webapp.projects.access import resolve_for_create

        meta = session.metadata
        try:
            project, project_error = resolve_for_create(request.user, meta.get("project"))
            if project_error:
                raise DatasetError(f"project: {project_error}")
            ds = services.create_dataset(request.user, upload=session, project=project,
                                         **{k: meta[k] for k in DATASET_FIELDS if meta.get(k, "") != ""})
        except DatasetError as exc:
            services.abort_upload(session)  # a refused file leaves nothing behind
            return _error(TusError(f"{exc} (the upload was removed)", _status_of(exc)))
        response["Trainyard-Dataset"] = str(ds.pk)
        return response

    @extend_schema(exclude=True)
    def delete(self, request, pk):
        try:
            services.abort_upload(self._session(pk))
        except TusError as exc:
            return _error(exc)
        return HttpResponse(status=204)


def _check_dataset_metadata(meta: dict) -> None:
    """The dataset the finished upload will become, checked before a byte arrives: every key is
    known, and with an explicit kind its options are valid for it."""
    try:
        services.check_upload_fields(meta, TRANSPORT_KEYS)
        kind = meta.get("kind", "").strip()
        if kind and kind != "auto":
            services.check_options(kind, {k: meta[k] for k in UPLOAD_OPTIONS if k in meta})
    except DatasetError as exc:
        raise TusError(f"Upload-Metadata: {exc}") from None


def _wants_dataset(meta: dict) -> bool:
    return "create_dataset" in meta and meta["create_dataset"].strip().lower() not in ("0", "false", "no")
