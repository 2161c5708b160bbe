"""JSON API: the same services and access rules as the pages; token or session auth."""

from __future__ import annotations

import re

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils.decorators import method_decorator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

import models_zoo
from models_zoo import kinds
from models_zoo.hparams import TrainConfig
from models_zoo.schema import describe
from webapp.datasets import services as dataset_services
from webapp.datasets.access import get_ingest_failure_for_user, ingest_failures_for
from webapp.datasets.uploads import upload_too_large_message
from webapp.datasets.models import IngestFailure, UploadSession
from webapp.datasets.validation import DatasetError
from webapp.datasets.views import UPLOAD_OPTIONS
from webapp.jobs import downsample, services
from webapp.jobs.access import datasets_for, get_dataset_for_user, get_job_for_user, jobs_for
from webapp.jobs.events import events_after
from webapp.jobs.models import Job
from webapp.jobs.views import artifact_response


class DatasetUpload(serializers.Serializer):
    file = serializers.FileField(required=False, help_text="the file, for files up to TRAINYARD_MAX_REQUEST_MB")
    upload = serializers.UUIDField(required=False, help_text="or the id of a completed chunked upload")
    name = serializers.CharField(required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    kind = serializers.ChoiceField(choices=["auto", *kinds.KINDS], required=False,
                                   help_text="default: detected from the file")
    label_column = serializers.CharField(required=False, allow_blank=True, help_text="default: 'label' or last column")
    text_column = serializers.CharField(required=False, allow_blank=True, help_text="text datasets")
    task = serializers.ChoiceField(choices=[c for c, _ in kinds.TASKS], required=False)
    image_size = serializers.IntegerField(required=False, help_text="image datasets: side in pixels")
    channels = serializers.ChoiceField(choices=[c for c, _ in kinds.CHANNELS], required=False,
                                       help_text="image datasets: default auto (grayscale when every image is)")
    level = serializers.ChoiceField(choices=["char", "byte"], required=False, help_text="corpus tokens")
    val_fraction = serializers.FloatField(required=False, help_text="default 0.2 (corpus 0.1)")


class UploadStart(serializers.Serializer):
    filename = serializers.CharField()
    size = serializers.IntegerField(help_text="the whole file's length in bytes")


class DatasetUpdate(serializers.Serializer):
    name = serializers.CharField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class DatasetShare(serializers.Serializer):
    username = serializers.CharField()
    action = serializers.ChoiceField(choices=["add", "remove"], required=False)


class JobCreate(serializers.Serializer):
    dataset = serializers.UUIDField()
    architecture = serializers.CharField(help_text="a name from /api/architectures/")
    name = serializers.CharField(required=False, allow_blank=True)
    model_config = serializers.DictField(required=False, help_text="the architecture's settings")
    train_config = serializers.DictField(required=False, help_text="epochs, batch_size, learning_rate, ...")
    priority = serializers.IntegerField(required=False, default=0, help_text="0 or lower (admins may raise it)")
    min_gpu_memory_gb = serializers.IntegerField(required=False, allow_null=True, default=None,
                                                 help_text="run only on a GPU with at least this many GB")
    gpu_type = serializers.CharField(required=False, allow_blank=True, default="", max_length=100,
                                     help_text="run only on a GPU whose name contains this, e.g. A100")


def _error(message, code=status.HTTP_400_BAD_REQUEST, errors=None):
    body = {"error": message}
    if errors:
        body["errors"] = errors
    return Response(body, status=code)


@method_decorator(login_not_required, name="dispatch")
class Api(APIView):
    """Base: LoginRequiredMiddleware must not redirect token-authenticated API calls;
    DRF's IsAuthenticated answers 401/403 instead."""


class DatasetList(Api):
    throttle_scope = "upload"  # on its POST (webapp/throttles.py)

    @extend_schema(operation_id="datasets_list", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response({"datasets": [d.to_dict() for d in datasets_for(request.user)[:1000]],
                         "failures": [f.to_dict() for f in ingest_failures_for(request.user)]})

    @extend_schema(request={"multipart/form-data": DatasetUpload}, responses={201: OpenApiTypes.OBJECT})
    def post(self, request):
        d = request.data  # parses the body; the size check runs while streaming
        if getattr(request._request, "upload_too_large", False):
            return _error(upload_too_large_message(), status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        upload = None
        if d.get("upload"):
            upload = _own_upload(request.user, d["upload"])
        try:
            ds = dataset_services.create_dataset(
                request.user, request.FILES.get("file"), upload=upload, name=d.get("name", ""),
                description=d.get("description", ""),
                kind=d.get("kind", "auto"), **{k: d.get(k) for k in UPLOAD_OPTIONS},
            )
        except dataset_services.UploadIncomplete as exc:
            return _error(str(exc))  # the client may send the missing chunks and try again
        except DatasetError as exc:
            if upload is not None:
                dataset_services.abort_upload(upload)  # a rejected file leaves nothing behind, chunked or not
            return _error(str(exc))
        failure = IngestFailure.objects.filter(pk=ds.pk).first()
        if failure is not None:  # could not even be queued (the broker is down): nothing was kept
            return Response(failure.to_dict(), status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(ds.to_dict(), status=status.HTTP_201_CREATED)


def _own_upload(user, pk) -> UploadSession:
    try:
        return UploadSession.objects.get(pk=pk, owner=user)
    except (UploadSession.DoesNotExist, ValidationError, ValueError):
        raise Http404 from None


class UploadList(Api):
    throttle_scope = "upload"  # on its POST (webapp/throttles.py)

    @extend_schema(request=UploadStart, responses={201: OpenApiTypes.OBJECT})
    def post(self, request):
        """Start a chunked upload; then PUT the chunks in order and POST /api/datasets/ with `upload`."""
        try:
            session = dataset_services.start_upload(request.user, request.data.get("filename"),
                                                    request.data.get("size"))
        except dataset_services.TooManyUploads as exc:
            return _error(str(exc), status.HTTP_429_TOO_MANY_REQUESTS)
        except DatasetError as exc:
            return _error(str(exc))
        return Response(session.to_dict(), status=status.HTTP_201_CREATED)


class UploadDetail(Api):
    parser_classes = []  # PUT bodies are raw bytes, read as a stream

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, pk):
        return Response(_own_upload(request.user, pk).to_dict())

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        parameters=[OpenApiParameter("Content-Range", str, OpenApiParameter.HEADER,
                                     description="bytes START-END/TOTAL (END inclusive)")],
        responses=OpenApiTypes.OBJECT,
    )
    def put(self, request, pk):
        session = _own_upload(request.user, pk)
        match = CONTENT_RANGE.fullmatch(request.headers.get("Content-Range", ""))
        if not match:
            return _error("send a Content-Range header: bytes START-END/TOTAL")
        start, end, total = (int(g) for g in match.groups())
        if total != session.size or end < start:
            return _error(f"Content-Range does not fit this upload of {session.size} bytes")
        try:
            session = dataset_services.append_chunk(session, start, request._request, end - start + 1)
        except dataset_services.UploadOutOfOrder as exc:
            return Response({"error": str(exc), "received": exc.received}, status=status.HTTP_409_CONFLICT)
        except DatasetError as exc:
            return _error(str(exc), status.HTTP_413_REQUEST_ENTITY_TOO_LARGE if "at most" in str(exc) else 400)
        return Response(session.to_dict())

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        dataset_services.abort_upload(_own_upload(request.user, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class DatasetDetail(Api):
    @extend_schema(responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT},
                   description="404 for an unknown id; for the owner of a dataset whose ingest failed (its "
                               "row and files are removed) the 404 body says why: status 'failed' and error.")
    def get(self, request, pk):
        try:
            return Response(get_dataset_for_user(request.user, pk).to_dict())
        except Http404:
            failure = get_ingest_failure_for_user(request.user, pk)  # others: a plain 404
            return Response(failure.to_dict(), status=status.HTTP_404_NOT_FOUND)

    @extend_schema(request=DatasetUpdate, responses=OpenApiTypes.OBJECT)
    def patch(self, request, pk):
        ds = get_dataset_for_user(request.user, pk, write=True)
        try:
            dataset_services.update_dataset(ds, name=request.data.get("name"),
                                            description=request.data.get("description"), actor=request.user)
        except DatasetError as exc:
            return _error(str(exc))
        return Response(ds.to_dict())

    @extend_schema(responses={204: None}, description="deletes the dataset, or dismisses the owner's notice "
                                                       "of a failed ingest with this id")
    def delete(self, request, pk):
        try:
            ds = get_dataset_for_user(request.user, pk, write="delete")
        except Http404:
            dataset_services.dismiss_failure(get_ingest_failure_for_user(request.user, pk))
            return Response(status=status.HTTP_204_NO_CONTENT)
        try:
            dataset_services.delete_dataset(ds, actor=request.user)
        except DatasetError as exc:
            return _error(str(exc), status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatasetShareView(Api):
    throttle_scope = "share"  # on its POST (webapp/throttles.py)

    @extend_schema(request=DatasetShare, responses=OpenApiTypes.OBJECT)
    def post(self, request, pk):
        ds = get_dataset_for_user(request.user, pk, write=True)
        username = str(request.data.get("username", ""))
        try:
            if request.data.get("action") == "remove":
                dataset_services.unshare_dataset(ds, username, actor=request.user)
            else:
                dataset_services.share_dataset(ds, username, actor=request.user)
        except DatasetError as exc:
            return _error(str(exc))
        return Response({"shared_with": sorted(ds.shared_with.values_list("username", flat=True))})


class ArchitectureList(Api):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response({
            "architectures": [
                {"name": e.name, "label": e.label, "dataset_kinds": list(e.kinds), "model_config": e.describe()}
                for e in models_zoo.REGISTRY.values()
            ],
            "train_config": describe(TrainConfig),
        })


class JobList(Api):
    throttle_scope = "submit"  # on its POST (webapp/throttles.py)

    @extend_schema(operation_id="jobs_list", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response({"jobs": Job.to_dicts(jobs_for(request.user).prefetch_related("artifacts")[:1000])})

    @extend_schema(request=JobCreate, responses={201: OpenApiTypes.OBJECT})
    def post(self, request):
        s = JobCreate(data=request.data)
        if not s.is_valid():
            return _error("invalid request", errors={k: " ".join(map(str, v)) for k, v in s.errors.items()})
        v = s.validated_data
        dataset = datasets_for(request.user).filter(pk=v["dataset"]).first()
        if dataset is None:
            return _error("invalid request", errors={"dataset": "no such dataset"})
        try:
            job = services.submit_job(request.user, dataset, v["architecture"], v.get("model_config"),
                                      v.get("train_config"), name=v.get("name", ""), priority=v["priority"],
                                      min_gpu_memory_gb=v["min_gpu_memory_gb"], gpu_type=v["gpu_type"])
        except services.SubmitError as exc:
            return _error("too many jobs" if exc.status == 429 else "invalid request", exc.status, errors=exc.errors)
        return Response(job.to_dict(), status=status.HTTP_201_CREATED)


class JobDetail(Api):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, pk):
        return Response(get_job_for_user(request.user, pk).to_dict())

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        job = get_job_for_user(request.user, pk, write="delete")
        if not services.delete_job(job, actor=request.user):
            return _error("cancel the job before deleting it", status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobCancel(Api):
    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request, pk):
        job = services.cancel_job(get_job_for_user(request.user, pk, write=True), actor=request.user)
        return Response(job.to_dict())


class JobRetry(Api):
    throttle_scope = "submit"

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT,
                   description="Queue a failed job again (same id); it resumes from its last checkpoint and its "
                               "attempts start over. 409 when the job is not failed, 429 at the active-job limit.")
    def post(self, request, pk):
        job = get_job_for_user(request.user, pk, write=True)
        try:
            job = services.retry_job(job, actor=request.user)
        except services.RetryError as exc:
            return _error(" ".join(exc.errors.values()), exc.status, exc.errors)
        return Response(job.to_dict())


class JobEvents(Api):
    @extend_schema(
        parameters=[OpenApiParameter("after", int, description="return events numbered above this"),
                    OpenApiParameter("limit", int, description="at most this many (max 5000)"),
                    OpenApiParameter("history", int, description=(
                        "1: the whole history up to last_seq, downsampled for drawing: each metric series "
                        "keeps at most `points` points (LTTB), only the latest progress/samples/confusion, "
                        "the last 2000 log lines; then follow the exact tail with after=last_seq")),
                    OpenApiParameter("points", int, description="with history=1: points per series (100-10000)")],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request, pk):
        job = get_job_for_user(request.user, pk)
        try:
            after = max(0, int(request.query_params.get("after", 0)))
            limit = min(5000, max(1, int(request.query_params.get("limit", 5000))))
            points = min(10_000, max(100, int(request.query_params.get("points", 1000))))
        except ValueError:
            return _error("after, limit and points must be whole numbers")
        if request.query_params.get("history") == "1":
            return Response({"job": str(job.pk), **downsample.history(job, points=points)})
        return Response({"job": str(job.pk), "last_seq": job.last_seq, "events": events_after(job, after, limit)})


class ArtifactDownload(Api):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, pk, name):
        job = get_job_for_user(request.user, pk)
        try:
            return artifact_response(job, name, request.user)
        except Http404:
            return _error("no such artifact", status.HTTP_404_NOT_FOUND)
