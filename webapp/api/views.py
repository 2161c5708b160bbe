"""JSON API: the same services and access rules as the pages; token or session auth.

Every view derives from `Api`: JSON bodies must be objects, every refusal has the one error
shape (webapp/api/errors.py), and the request's fields go through a serializer before any
service sees them. The descriptions in `extend_schema` are the API's user documentation.
"""

from __future__ import annotations

import re
import time

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.db import transaction
from django.http import Http404
from django.utils.decorators import method_decorator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

import models_zoo
from models_zoo import kinds
from models_zoo.hparams import TrainConfig
from models_zoo.schema import describe
from webapp.api import errors as api_errors
from webapp.api import schema as docs
from webapp.api.errors import validated
from webapp.datasets import services as dataset_services
from webapp.datasets.access import get_ingest_failure_for_user, ingest_failures_for
from webapp.datasets.models import IngestFailure, UploadSession
from webapp.datasets.uploads import upload_too_large_message
from webapp.datasets.validation import DatasetError
from webapp.datasets.views import UPLOAD_OPTIONS
from webapp.exports import services as exports
from webapp.exports.models import MlflowExport
from webapp.inference import services as inference
from webapp.inference.models import OnnxExport, Prediction
from webapp.jobs import downsample, listing, scheduler, services
from webapp.jobs.access import datasets_for, get_dataset_for_user, get_job_for_user, jobs_for
from webapp.jobs.events import events_after
from webapp.jobs.models import Job
from webapp.jobs.search import SearchError
from webapp.jobs.views import artifact_response
from webapp.monitoring import recorder
from webapp.projects.access import project_filter, resolve_for_create

NAME = {"max_length": 200, "trim_whitespace": True}


class DatasetUpload(serializers.Serializer):
    file = serializers.FileField(required=False, help_text="the file, for files up to TRAINYARD_MAX_REQUEST_MB")
    upload = serializers.UUIDField(required=False, help_text="or the id of a completed chunked upload")
    name = serializers.CharField(required=False, allow_blank=True, **NAME, help_text="default: the file's name")
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    kind = serializers.ChoiceField(choices=["auto", *kinds.KINDS], required=False,
                                   help_text="default: detected from the file")
    label_column = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                         help_text="default: 'label' or last column")
    text_column = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                        help_text="text datasets")
    task = serializers.ChoiceField(choices=[c for c, _ in kinds.TASKS], required=False)
    image_size = serializers.IntegerField(required=False, min_value=kinds.IMAGE_SIZE_RANGE[0],
                                          max_value=kinds.IMAGE_SIZE_RANGE[1],
                                          help_text="image datasets: side in pixels")
    channels = serializers.ChoiceField(choices=[c for c, _ in kinds.CHANNELS], required=False,
                                       help_text="image datasets: default auto (grayscale when every image is)")
    level = serializers.ChoiceField(choices=["char", "byte"], required=False, help_text="corpus tokens")
    val_fraction = serializers.FloatField(required=False, min_value=0.0, max_value=1.0,
                                          help_text="default 0.2 (corpus 0.1)")
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1,
                                    help_text="the seeded split's seed (tables, sequences, texts, images); default 0")
    split_column = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                         help_text="tables, sequences, texts: the column whose values (train, val, "
                                                   "test) decide the split; default: a column named 'split'")
    missing = serializers.ChoiceField(choices=[c for c, _ in kinds.MISSING], required=False,
                                      help_text="tables, sequences: empty cells are refused (default) or imputed "
                                                "(training median / most frequent, plus a missing indicator)")
    test_fraction = serializers.FloatField(required=False, min_value=0.0, max_value=1.0,
                                           help_text="seeded split: the share of rows held out as the test split, "
                                                     "evaluated once on the final model; default 0 (none)")
    project = serializers.UUIDField(required=False, allow_null=True,
                                    help_text="a project where you are a member or maintainer; default: personal space")


API_UPLOAD_FIELDS = ("file", "upload", "project")  # besides kinds.UPLOAD_FIELDS and every kind's options


class DatasetFromUpload(DatasetUpload):
    """The JSON form of an upload: a completed chunked upload's id instead of the file."""

    file = None
    upload = serializers.UUIDField(help_text="the id of a completed chunked upload (/api/uploads/)")


class UploadStart(serializers.Serializer):
    filename = serializers.CharField(min_length=1, max_length=1000, help_text="the file's name, e.g. data.csv")
    size = serializers.IntegerField(min_value=1, help_text="the whole file's length in bytes (a whole number)")


class DatasetUpdate(serializers.Serializer):
    name = serializers.CharField(required=False, min_length=1, **NAME)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)


class DatasetShare(serializers.Serializer):
    username = serializers.CharField(min_length=1, max_length=150)
    action = serializers.ChoiceField(choices=["add", "remove"], required=False, default="add")


class JobCreate(serializers.Serializer):
    dataset = serializers.UUIDField()
    architecture = serializers.CharField(min_length=1, help_text="a name from /api/architectures/")
    name = serializers.CharField(required=False, allow_blank=True, **NAME)
    model_config = serializers.DictField(required=False, help_text="the architecture's settings")
    train_config = serializers.DictField(required=False, help_text="epochs, batch_size, learning_rate, ...")
    priority = serializers.IntegerField(required=False, default=0, help_text="0 or lower (admins may raise it)")
    min_gpu_memory_gb = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                                 help_text="run only on a GPU with at least this many GB")
    gpu_type = serializers.CharField(required=False, allow_blank=True, default="", max_length=100,
                                     help_text="run only on a GPU whose name contains this, e.g. A100")
    project = serializers.UUIDField(required=False, allow_null=True, default=None,
                                    help_text="a project where you are a member or maintainer (/api/projects/); "
                                              "empty: your personal space")


_error = api_errors.error


@method_decorator(login_not_required, name="dispatch")
class Api(APIView):
    """Base: LoginRequiredMiddleware must not redirect token-authenticated API calls;
    DRF's IsAuthenticated answers 401/403 instead. JSON bodies must be objects."""

    parser_classes = api_errors.PARSERS

    def get_exception_handler(self):
        return api_errors.exception_handler


class DatasetList(Api):
    throttle_scope = "upload"  # on its POST (webapp/throttles.py)

    @extend_schema(operation_id="datasets_list", responses=docs.responses({200: docs.DatasetListBody}),
                   description="Your datasets and those shared with you (at most 1000), and your uploads "
                               "that ingest refused.")
    def get(self, request):
        return Response({"datasets": [d.to_dict() for d in datasets_for(request.user)[:1000]],
                         "failures": [f.to_dict() for f in ingest_failures_for(request.user)]})

    @extend_schema(
        request={"multipart/form-data": DatasetUpload, "application/json": DatasetFromUpload},
        responses=docs.responses({201: docs.Dataset}, *docs.BODY, 404, 413, 503),
        description="Upload a dataset: send `file` (multipart), or the `upload` id of a completed chunked "
                    "upload (see /api/uploads/). The file is checked at once (its kind, format, your quota); "
                    "a refused file gets 400 and is not kept. A field that is not listed here is refused "
                    "(400, `errors` names it, `fields` lists the valid names), as is an option of another kind "
                    "than the file's. The dataset is then `ingesting` until a worker "
                    "has read it: poll GET /api/datasets/{id}/.")
    def post(self, request):
        d = request.data  # parses the body; the size check runs while streaming
        if getattr(request._request, "upload_too_large", False):
            return _error(upload_too_large_message(), status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        try:  # a typo is refused like job settings' (DRF would ignore it)
            dataset_services.check_upload_fields(d.keys(), API_UPLOAD_FIELDS)
        except dataset_services.UnknownUploadFields as exc:
            return _error(str(exc), errors={name: "unknown field" for name in exc.unknown}, fields=exc.valid)
        v = validated(DatasetUpload, d)
        project, project_error = resolve_for_create(request.user, v.get("project"))
        if project_error:
            return _error("invalid request", errors={"project": project_error})
        upload = _own_upload(request.user, v["upload"]) if v.get("upload") else None
        try:
            ds = dataset_services.create_dataset(
                request.user, v.get("file"), upload=upload, name=v.get("name", ""), project=project,
                description=v.get("description", ""),
                kind=v.get("kind", "auto"), **{k: v.get(k) for k in UPLOAD_OPTIONS},
            )
        except dataset_services.UploadIncomplete as exc:
            return _error(str(exc))  # the client may send the missing chunks and try again
        except DatasetError as exc:
            if upload is not None:
                dataset_services.abort_upload(upload)  # a rejected file leaves nothing behind, chunked or not
            return _error(str(exc))
        return _created_dataset(ds)


def _created_dataset(ds) -> Response:
    """201, unless the ingest could not be queued (503) or a fast worker refused the file already
    (400, with the ingest's reason): which one is told by the enqueue, not by the notice left behind."""
    failure = IngestFailure.objects.filter(pk=ds.pk).first()
    if failure is None:
        return Response(ds.to_dict(), status=status.HTTP_201_CREATED)
    if getattr(ds, "queue_error", None):  # the broker is down: nothing was kept
        return Response({**failure.to_dict(), **api_errors.body(failure.error)},
                        status=status.HTTP_503_SERVICE_UNAVAILABLE)
    return Response({**failure.to_dict(), **api_errors.body(failure.error)}, status=status.HTTP_400_BAD_REQUEST)


def _own_upload(user, pk) -> UploadSession:
    try:
        return UploadSession.objects.get(pk=pk, owner=user)
    except (UploadSession.DoesNotExist, ValidationError, ValueError):
        raise Http404 from None


class UploadList(Api):
    throttle_scope = "upload"  # on its POST (webapp/throttles.py)

    @extend_schema(request=UploadStart, responses=docs.responses({201: docs.Upload}, *docs.BODY),
                   description="Start a chunked upload (for files above the request limit, or to resume "
                               "after a dropped connection): then PUT the chunks in order to "
                               "/api/uploads/{id}/ and POST /api/datasets/ or /api/models/ with `upload`.")
    def post(self, request):
        v = validated(UploadStart, request.data)
        try:
            session = dataset_services.start_upload(request.user, v["filename"], v["size"])
        except dataset_services.TooManyUploads as exc:
            return api_errors.error(str(exc), status.HTTP_429_TOO_MANY_REQUESTS)
        except DatasetError as exc:
            return _error(str(exc))
        return Response(session.to_dict(), status=status.HTTP_201_CREATED)


class UploadDetail(Api):
    parser_classes = []  # PUT bodies are raw bytes, read as a stream

    @extend_schema(responses=docs.responses({200: docs.Upload}, 404),
                   description="How much of the upload the server has: resume from `received`.")
    def get(self, request, pk):
        return Response(_own_upload(request.user, pk).to_dict())

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        parameters=[OpenApiParameter("Content-Range", str, OpenApiParameter.HEADER, required=True,
                                     description="bytes START-END/TOTAL (END inclusive)")],
        responses={**docs.responses({200: docs.Upload}, *docs.BODY, 404, 413),
                   409: OpenApiResponse(docs.UploadConflict, description="the chunk does not start where "
                                                                              "the upload stands: resend from "
                                                                              "`received`")},
        description="Append one chunk (at most `chunk_bytes`), starting at `received`; resending the last "
                    "chunk is harmless.",
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
            return _error(str(exc), status.HTTP_409_CONFLICT, received=exc.received)
        except DatasetError as exc:
            return _error(str(exc), status.HTTP_413_REQUEST_ENTITY_TOO_LARGE if "at most" in str(exc) else 400)
        return Response(session.to_dict())

    @extend_schema(responses=docs.responses({204: None}, 404), description="Abandon the upload and its bytes.")
    def delete(self, request, pk):
        dataset_services.abort_upload(_own_upload(request.user, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class DatasetDetail(Api):
    @extend_schema(responses={**docs.responses({200: docs.Dataset}),
                              404: OpenApiResponse(docs.DatasetGone, description=(
                                  "No such dataset. For the owner of an upload that ingest refused (its row "
                                  "and files are removed) the body says why: status 'failed' and error."))},
                   description="One dataset: its status while ingesting, then what ingest found (`info`).")
    def get(self, request, pk):
        try:
            return Response(get_dataset_for_user(request.user, pk).to_dict())
        except Http404:
            failure = get_ingest_failure_for_user(request.user, pk)  # others: a plain 404
            return Response({**failure.to_dict(), **api_errors.body(failure.error)},
                            status=status.HTTP_404_NOT_FOUND)

    @extend_schema(request=DatasetUpdate, responses=docs.responses({200: docs.Dataset}, *docs.BODY, 404),
                   description="Rename a dataset or change its description (owner only).")
    def patch(self, request, pk):
        ds = get_dataset_for_user(request.user, pk, write=True)
        v = validated(DatasetUpdate, request.data)
        try:
            dataset_services.update_dataset(ds, name=v.get("name"), description=v.get("description"),
                                            actor=request.user)
        except DatasetError as exc:
            return _error(str(exc))
        return Response(ds.to_dict())

    @extend_schema(responses=docs.responses({204: None}, 404, 409),
                   description="Delete the dataset and its files (409 while a queued or running job uses it), "
                               "or dismiss the notice of a refused upload with this id.")
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

    @extend_schema(request=DatasetShare, responses=docs.responses({200: docs.Shares}, *docs.BODY, 404),
                   description="Share the dataset read-only with another user (`action: add`, the default) "
                               "or stop sharing it (`remove`). Owner only.")
    def post(self, request, pk):
        ds = get_dataset_for_user(request.user, pk, write=True)
        v = validated(DatasetShare, request.data)
        try:
            if v["action"] == "remove":
                dataset_services.unshare_dataset(ds, v["username"], actor=request.user)
            else:
                dataset_services.share_dataset(ds, v["username"], actor=request.user)
        except DatasetError as exc:
            return _error(str(exc))
        return Response({"shared_with": sorted(ds.shared_with.values_list("username", flat=True))})


class ArchitectureList(Api):
    @extend_schema(responses=docs.responses({200: docs.ArchitecturesBody}),
                   description="The architectures a job may use, the dataset kinds each accepts, and the "
                               "settings of each (`model_config`) and of training (`train_config`): name, "
                               "kind, default (a JSON value: lists are arrays), range and choices.")
    def get(self, request):
        return Response({
            "architectures": [
                {"name": e.name, "label": e.label, "dataset_kinds": list(e.kinds),
                 "model_config": describe(e.config_cls, json_values=True)}
                for e in models_zoo.REGISTRY.values()
            ],
            "train_config": describe(TrainConfig, json_values=True),
            # What a job's `gpus` (devices) may be on the workers online now.
            "devices": scheduler.devices_offer(),
            # ... and its `nodes` (machines, each with `gpus` devices).
            "nodes": scheduler.nodes_offer(),
        })


class _DefaultSetting(serializers.Serializer):
    value = serializers.JSONField(help_text="the value the job gets when it leaves this setting out")
    reason = serializers.CharField(help_text='why, e.g. "96 epochs: 4,000 training rows, 63 steps per epoch"')


class _TrainDefaultsBody(serializers.Serializer):
    dataset = serializers.UUIDField()
    architecture = serializers.CharField()
    rule = serializers.CharField(help_text="the rule the defaults follow, in words")
    settings = serializers.DictField(child=_DefaultSetting(), help_text="setting name → value and reason")


class TrainDefaults(Api):
    @extend_schema(operation_id="train_defaults", parameters=[
        OpenApiParameter("dataset", str, required=True, description="the dataset's id"),
        OpenApiParameter("architecture", str, required=True),
        OpenApiParameter("model.<setting>", str, description="model settings that change the defaults "
                                                             "(a GPT's block_size)")],
        responses=docs.responses({200: _TrainDefaultsBody}, 400, 404),
        description="The training settings a job of this architecture on this dataset gets for the ones "
                    "it leaves out (`settings`: name → value and the reason), and the rule (`rule`). "
                    "Explicit settings always win. Hugging Face architectures have their fine-tuning "
                    "defaults instead (empty `settings`).")
    def get(self, request):
        from models_zoo import defaults as adaptive
        from models_zoo.schema import ConfigError, to_json

        dataset = get_dataset_for_user(request.user, request.query_params.get("dataset", ""))
        name = request.query_params.get("architecture", "")
        try:
            entry = models_zoo.get(name)
        except ConfigError as exc:
            return _error(str(exc), errors=exc.errors)
        if not dataset.is_ready:
            return _error(f"dataset {dataset.name!r} is {dataset.status}, not ready")
        given = {k[6:]: v for k, v in request.query_params.items() if k.startswith("model.")}
        try:
            model_config = to_json(entry.validate(given))
        except (ConfigError, ValueError):
            model_config = to_json(entry.validate({}))
        values = adaptive.adaptive_defaults(name, model_config, dataset.info)
        return Response({"dataset": str(dataset.pk), "architecture": name, "rule": adaptive.RULE,
                         "settings": {k: {"value": v, "reason": r} for k, (v, r) in values.items()}})


class JobUpdate(serializers.Serializer):
    tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=100,
                                 help_text="the job's tags from now on (1 to 40 letters, digits, . _ -; at most 20)")
    note = serializers.CharField(required=False, allow_blank=True, max_length=20_000, trim_whitespace=False,
                                 help_text="the owner's note, Markdown (rendered with raw HTML shown as text)")
    archived = serializers.BooleanField(required=False, help_text="true hides it from the default list; "
                                                                  "nothing is deleted")


class BulkRequest(serializers.Serializer):
    action = serializers.ChoiceField(choices=services.BULK_ACTIONS)
    ids = serializers.ListField(child=serializers.CharField(max_length=100), min_length=1,
                                max_length=services.MAX_BULK)
    tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=100,
                                 help_text="for tag / untag")


class RepeatRequest(serializers.Serializer):
    n = serializers.IntegerField(min_value=1, max_value=services.MAX_REPEATS, help_text="how many seeds")


class JobListQuery(serializers.Serializer):
    q = serializers.CharField(required=False, allow_blank=True, max_length=500, help_text=(
        "search: terms name<op>value (op < <= > >= = !=) over the training settings (learning_rate<0.01), "
        "model.<setting>, the validation metrics (accuracy>0.9: the final model's, a running job's latest epoch's; "
        "best.<metric>: the best epoch's; test.<metric>), tag:NAME, and free words over name, tags, dataset, "
        "architecture, worker. A search that cannot be read is a 400 that says why."))
    status = serializers.ChoiceField(choices=Job.Status.values, required=False)
    dataset = serializers.UUIDField(required=False)
    architecture = serializers.CharField(required=False, max_length=50)
    archived = serializers.ChoiceField(choices=["only", "all"], required=False,
                                       help_text="left out: archived jobs are not listed")
    project = serializers.RegexField(r"^(personal|[0-9a-fA-F-]{36})$", required=False,
                                     help_text="a project's id (/api/projects/), or personal: the jobs of no project")
    sort = serializers.CharField(required=False, max_length=100, help_text=(
        "created (default -created), name, status, architecture, dataset, started, finished, or a numeric "
        "search name (accuracy, best.loss, learning_rate); - first for descending"))
    page = serializers.IntegerField(required=False, min_value=1)
    per_page = serializers.IntegerField(required=False, min_value=1, max_value=1000, help_text="default 100")


class JobList(Api):
    throttle_scope = "submit"  # on its POST (webapp/throttles.py)

    @extend_schema(operation_id="jobs_list", parameters=[JobListQuery],
                   responses=docs.responses({200: docs.JobListBody}, 400),
                   description="The jobs you may see, filtered and searched, a page at a time (newest first "
                               "unless `sort` says otherwise). Archived jobs only with `archived`.")
    def get(self, request):
        validated(JobListQuery, request.query_params)
        params = {k: request.query_params.get(k, "") for k in JobListQuery().fields}
        params["per_page"] = params["per_page"] or "100"
        try:
            visible = project_filter(jobs_for(request.user), params["project"])
            page = listing.list_jobs(visible.prefetch_related("artifacts"), params,
                                     staff=request.user.is_staff, max_per_page=1000)
        except SearchError as exc:
            return _error(str(exc))
        return Response({"jobs": Job.to_dicts(page.jobs), "total": page.total, "page": page.page,
                         "pages": page.pages, "per_page": page.per_page, "sort": page.sort, "capped": page.capped})

    @extend_schema(request=JobCreate, responses=docs.responses({201: docs.Job}, *docs.BODY),
                   description="Submit a training job on a dataset you may use. Settings are checked against "
                               "the architecture's schema (/api/architectures/); each refused one is named in "
                               "`errors`. 429 when you have too many queued or running jobs.")
    def post(self, request):
        v = validated(JobCreate, request.data)
        project, project_error = resolve_for_create(request.user, v["project"])
        if project_error:
            return _error("invalid request", errors={"project": project_error})
        dataset = datasets_for(request.user).filter(pk=v["dataset"]).first()
        if dataset is None:
            return _error("invalid request", errors={"dataset": "no such dataset"})
        try:
            job = services.submit_job(request.user, dataset, v["architecture"], v.get("model_config"),
                                      v.get("train_config"), name=v.get("name", ""), priority=v["priority"],
                                      min_gpu_memory_gb=v["min_gpu_memory_gb"], gpu_type=v["gpu_type"], project=project)
        except services.SubmitError as exc:
            return _error("too many jobs" if exc.status == 429 else "invalid request", exc.status, errors=exc.errors)
        return Response(job.to_dict(), status=status.HTTP_201_CREATED)


class JobDetail(Api):
    @extend_schema(responses=docs.responses({200: docs.Job}, 404),
                   description="One job: status, progress, latest metrics and artifacts.")
    def get(self, request, pk):
        return Response(get_job_for_user(request.user, pk).to_dict())

    @extend_schema(request=JobUpdate, responses=docs.responses({200: docs.Job}, *docs.BODY, 404),
                   description="Change the job's tags, note or archived state (the owner, or a permission); "
                               "the fields left out stay as they are. A bad tag is a 400 and changes nothing.")
    def patch(self, request, pk):
        job = get_job_for_user(request.user, pk, write=True)
        v = validated(JobUpdate, request.data)
        try:
            with transaction.atomic():
                if "tags" in v:
                    services.set_tags(job, v["tags"])
                if "note" in v:
                    services.set_note(job, v["note"])
                if "archived" in v:
                    services.archive_job(job, v["archived"], actor=request.user)
        except services.OrganiseError as exc:
            return _error(" ".join(exc.errors.values()), errors=exc.errors)
        job = jobs_for(request.user).prefetch_related("artifacts", "tags").get(pk=job.pk)
        return Response(job.to_dict())

    @extend_schema(responses=docs.responses({204: None}, 404, 409),
                   description="Delete a finished job and its files (409 while it is queued or running: "
                               "cancel it first).")
    def delete(self, request, pk):
        job = get_job_for_user(request.user, pk, write="delete")
        if not services.delete_job(job, actor=request.user):
            return _error("cancel the job before deleting it", status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobBulk(Api):
    @extend_schema(request=BulkRequest, responses=docs.responses({200: docs.BulkBody}, *docs.BODY),
                   description="One action on many jobs: cancel, delete (finished jobs), archive, unarchive, "
                               "tag, untag. Each job follows the one-job rule (yours, or a permission); the "
                               "others are left unchanged and listed in `skipped` with the reason.")
    def post(self, request):
        v = validated(BulkRequest, request.data)
        try:
            result = services.bulk_action(request.user, v["action"], v["ids"], tags=v.get("tags"))
        except services.OrganiseError as exc:
            return _error(" ".join(exc.errors.values()), errors=exc.errors)
        return Response({"action": result.action, "done": result.done, "skipped": result.skipped})


class JobRepeat(Api):
    throttle_scope = "submit"

    @extend_schema(request=RepeatRequest, responses=docs.responses({201: docs.RepeatBody}, *docs.BODY, 404, 409),
                   description="Repeat a finished job with `n` new seeds (seed+1 … seed+n): n new jobs with its "
                               "settings and tags, all or none (429 when they would pass the active-job limit).")
    def post(self, request, pk):
        job = get_job_for_user(request.user, pk, write=True)
        v = validated(RepeatRequest, request.data)
        try:
            jobs = services.repeat_with_seeds(job, request.user, v["n"])
        except services.SubmitError as exc:
            return api_errors.error(" ".join(exc.errors.values()), exc.status, exc.errors)
        return Response({"jobs": Job.to_dicts(jobs)}, status=status.HTTP_201_CREATED)


class JobCancel(Api):
    @extend_schema(request=None, responses=docs.responses({200: docs.Job}, 404),
                   description="Cancel a queued or running job (a running one stops at its next check, within "
                               "about a second); a finished job is returned unchanged.")
    def post(self, request, pk):
        job = services.cancel_job(get_job_for_user(request.user, pk, write=True), actor=request.user)
        return Response(job.to_dict())


class JobRetry(Api):
    throttle_scope = "submit"

    @extend_schema(request=None, responses=docs.responses({200: docs.Job}, 404, 409),
                   description="Queue a failed job again (same id); it resumes from its last checkpoint and its "
                               "attempts start over. 409 when the job is not failed, 429 at the active-job limit.")
    def post(self, request, pk):
        job = get_job_for_user(request.user, pk, write=True)
        try:
            job = services.retry_job(job, actor=request.user)
        except services.RetryError as exc:
            return api_errors.error(" ".join(exc.errors.values()), exc.status, exc.errors)
        return Response(job.to_dict())


class ContinueRequest(serializers.Serializer):
    epochs = serializers.IntegerField(min_value=1, max_value=10_000, help_text="epochs to add to the ones done")
    learning_rate = serializers.FloatField(required=False, allow_null=True, min_value=1e-12, max_value=10,
                                           help_text="a new learning rate (default: the job's)")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)


class JobContinue(Api):
    throttle_scope = "submit"

    @extend_schema(request=ContinueRequest, responses=docs.responses({201: docs.Job}, 400, 403, 404, 409, 413),
                   description="Continue a succeeded or cancelled job's training as a new job: from its last "
                               "checkpoint (weights, optimizer, schedule position, random state) for `epochs` "
                               "more epochs, optionally at a new learning rate. The new job's `lineage` names "
                               "the source. 409 when the job has no checkpoint or is not finished, 429 at the "
                               "active-job limit.")
    def post(self, request, pk):
        job = get_job_for_user(request.user, pk, write=True)
        v = validated(ContinueRequest, request.data)
        try:
            new = services.continue_job(job, request.user, v["epochs"], v.get("learning_rate"), v.get("name", ""))
        except services.SubmitError as exc:
            return api_errors.error(" ".join(exc.errors.values()), exc.status, exc.errors)
        return Response(new.to_dict(), status=status.HTTP_201_CREATED)


class EventsQuery(serializers.Serializer):
    after = serializers.IntegerField(required=False, default=0, min_value=0,
                                     help_text="return events numbered above this")
    limit = serializers.IntegerField(required=False, default=5000, min_value=1, max_value=5000,
                                     help_text="at most this many")
    history = serializers.ChoiceField(choices=["0", "1"], required=False, default="0", help_text=(
        "1: the whole history up to last_seq, downsampled for drawing: each metric series keeps at most "
        "`points` points (LTTB), as does each resource series over time, only the latest "
        "progress/samples/confusion, the last 2000 log lines; then "
        "follow the exact tail with after=last_seq"))
    points = serializers.IntegerField(required=False, default=1000, min_value=100, max_value=10_000,
                                      help_text="with history=1: points per series")


class JobEvents(Api):
    @extend_schema(parameters=[EventsQuery], responses=docs.responses({200: docs.EventsBody}, 400, 404),
                   description="The job's numbered events after `after` (the same events the websocket "
                               "sends), or its downsampled history with history=1.")
    def get(self, request, pk):
        start = time.perf_counter()
        job = get_job_for_user(request.user, pk)
        q = validated(EventsQuery, request.query_params)
        if q["history"] == "1":
            mode, response = "history", Response({"job": str(job.pk), **downsample.history(job, points=q["points"])})
        else:
            mode, response = "tail", Response({"job": str(job.pk), "last_seq": job.last_seq,
                                               "events": events_after(job, q["after"], q["limit"])})
        # Observed once the JSON is encoded: for a long history that is a good part of the time.
        response.add_post_render_callback(
            lambda _: recorder.observe(recorder.EVENT_HISTORY, time.perf_counter() - start, mode=mode))
        return response


class ArtifactDownload(Api):
    @extend_schema(responses={**docs.ARTIFACT_RESPONSES, **docs.errors(*docs.COMMON, 404)},
                   description="Download one of the job's files (names in the job's `artifacts`): the model, "
                               "its card (Markdown), metrics (JSON), thumbnails (PNG). The file's checksum is "
                               "verified before it is sent.")
    def get(self, request, pk, name):
        job = get_job_for_user(request.user, pk)
        try:
            response = artifact_response(job, name, request.user)
        except Http404:
            return _error("no such artifact", status.HTTP_404_NOT_FOUND)
        response["Content-Type"] = docs.artifact_media_type(name)
        return response


class TryInput(serializers.Serializer):
    """What the try page sends; which fields a job needs depends on its dataset kind."""

    text = serializers.CharField(required=False, allow_blank=True, help_text="text classifiers")
    sequence = serializers.CharField(required=False, allow_blank=True,
                                     help_text="sequence models: comma-separated numbers")
    prompt = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False,
                                   help_text="language models")
    temperature = serializers.FloatField(required=False, min_value=0.0, help_text="language models")
    top_k = serializers.IntegerField(required=False, min_value=0, help_text="language models")
    length = serializers.IntegerField(required=False, min_value=1, help_text="language models: characters")
    top_p = serializers.FloatField(required=False, min_value=0.0, max_value=1.0,
                                   help_text="fine-tuned Hugging Face language models: nucleus sampling")
    max_new_tokens = serializers.IntegerField(required=False, min_value=1,
                                              help_text="fine-tuned Hugging Face language models: tokens to generate")
    features = serializers.JSONField(required=False, help_text="tabular models: {column: value}, or one "
                                                               "comma-separated line in column order")
    image = serializers.FileField(required=False, help_text="image classifiers (multipart): a PNG or JPEG")


class TryInputJson(TryInput):
    image = None


class JobPredictions(Api):
    @extend_schema(operation_id="jobs_try", request={"application/json": TryInputJson,
                                                     "multipart/form-data": TryInput},
                   responses=docs.responses({202: docs.PredictionBody}, *docs.BODY, 404, 409),
                   description="Try a succeeded job's model on one input (the Try page). A worker answers: "
                               "poll GET /api/jobs/{id}/predictions/{prediction}/ (or watch ws/user/). "
                               "409 when the job has no model to try.")
    def post(self, request, pk):
        job = get_job_for_user(request.user, pk)
        v = validated(TryInput, request.data)
        image = v.pop("image", None)
        data = {k: (str(x) if not isinstance(x, (dict, list)) else x) for k, x in v.items()}
        try:
            p = inference.create_prediction(request.user, job, data, image)
        except inference.TryError as exc:
            return _error(exc.message, exc.status)
        return Response({"prediction": p.to_dict()}, status=status.HTTP_202_ACCEPTED)


class JobPrediction(Api):
    @extend_schema(operation_id="jobs_try_result", responses=docs.responses({200: docs.PredictionBody}, 404),
                   description="One of your tries of this job: `pending`, then `done` with `result` or "
                               "`failed` with `error`.")
    def get(self, request, pk, prediction):
        job = get_job_for_user(request.user, pk)
        p = Prediction.objects.filter(job=job, user=request.user, pk=prediction).first()
        if p is None:
            raise Http404
        return Response({"prediction": p.to_dict()})


class JobOnnx(Api):
    @extend_schema(operation_id="jobs_onnx", responses=docs.responses({200: docs.OnnxBody}, 404),
                   description="The state of the job's ONNX export (null before one was asked for) and the "
                               "job's artifacts; once `done`, download model.onnx from the artifacts.")
    def get(self, request, pk):
        job = get_job_for_user(request.user, pk)
        export = OnnxExport.objects.filter(job=job).first()
        return Response({"onnx": export.to_dict() if export else None,
                         "artifacts": [a.to_dict() for a in job.artifacts.all()]})

    @extend_schema(operation_id="jobs_onnx_create", request=None,
                   responses=docs.responses({202: docs.OnnxBody}, 404, 409),
                   description="Export a succeeded zoo job's model to ONNX (checked in onnxruntime against "
                               "PyTorch) in a worker; again after a failure. 409 when the model cannot be "
                               "exported.")
    def post(self, request, pk):
        job = get_job_for_user(request.user, pk, write=True)  # it adds model.onnx to the job, as the page's
        try:
            export = inference.request_onnx_export(request.user, job)
        except inference.TryError as exc:
            return _error(exc.message, exc.status)
        return Response({"onnx": export.to_dict()}, status=status.HTTP_202_ACCEPTED)


class MlflowExportRequest(serializers.Serializer):
    tracking_uri = serializers.CharField(max_length=500, allow_blank=True, help_text=(
        "the MLflow tracking server, http(s)://host[:port][/path]: public addresses only, unless an "
        "administrator allowlisted it (TRAINYARD_MLFLOW_ALLOWLIST); or file:///folder inside the server's "
        "TRAINYARD_MLFLOW_FILE_ROOT"))
    experiment = serializers.CharField(required=False, allow_blank=True, max_length=200, default="",
                                       help_text="default: trainyard (created when missing)")
    register_model = serializers.BooleanField(required=False, default=False,
                                              help_text="also register the model files as a new model version")
    model_name = serializers.CharField(required=False, allow_blank=True, max_length=200, default="",
                                       help_text="with register_model: the registered model's name (default: "
                                                 "the job's name)")


def _own_mlflow_exports(user, job):
    return MlflowExport.objects.filter(job=job, user=user)


class JobMlflowExports(Api):
    throttle_scope = "export"  # on its POST (webapp/throttles.py)

    @extend_schema(operation_id="jobs_export_mlflow_list", responses=docs.responses({200: docs.MlflowExportList}, 404),
                   description="Your MLflow pushes of this job, newest first (the last 20 that ended, and "
                               "those queued or running).")
    def get(self, request, pk):
        job = get_job_for_user(request.user, pk)
        return Response({"exports": [e.to_dict() for e in _own_mlflow_exports(request.user, job)[:50]]})

    @extend_schema(operation_id="jobs_export_mlflow", request=MlflowExportRequest,
                   responses=docs.responses({202: docs.MlflowExport}, *docs.BODY, 404, 409),
                   description="Push an ended job to an MLflow tracking server: a run with the job's settings as "
                               "params, its whole metric history (`split/name`, original steps and times, "
                               "log_batch in batches of at most 1000), its model files as artifacts under "
                               "`model/`, and with `register_model` a new version of a registered model. A worker "
                               "does it: poll GET /api/jobs/{id}/exports/mlflow/{export}/ (or watch ws/user/, "
                               "`{\"type\": \"mlflow\"}`) until `done` or `failed` (`error` says why). A refused "
                               "URI (internal address, file: outside the allowed folder, credentials in it) is "
                               "400 and nothing is stored; 409 while the job is queued or running; 429 with too "
                               "many pushes in progress.")
    def post(self, request, pk):
        job = get_job_for_user(request.user, pk)
        v = validated(MlflowExportRequest, request.data)
        try:
            export = exports.request_mlflow_export(request.user, job, v["tracking_uri"], experiment=v["experiment"],
                                                   register_model=v["register_model"], model_name=v["model_name"])
        except exports.ExportError as exc:
            return _error(exc.message, exc.status, errors={exc.field: exc.message} if exc.status == 400 else None)
        return Response(export.to_dict(), status=status.HTTP_202_ACCEPTED)


class JobMlflowExport(Api):
    @extend_schema(operation_id="jobs_export_mlflow_result", responses=docs.responses({200: docs.MlflowExport}, 404),
                   description="One of your MLflow pushes of this job: `pending`, `running`, then `done` (with "
                               "`run_id`, `run_url`, `model_version`, `counts`) or `failed` (with `error`).")
    def get(self, request, pk, export):
        job = get_job_for_user(request.user, pk)
        row = _own_mlflow_exports(request.user, job).filter(pk=export).first()
        if row is None:
            raise Http404
        return Response(row.to_dict())


class JobTensorboardExport(Api):
    @extend_schema(operation_id="jobs_export_tensorboard",
                   responses={(200, "application/gzip"): OpenApiTypes.BINARY, **docs.errors(*docs.COMMON, 404)},
                   description="The job's metric history as TensorBoard event files, in a .tar.gz: "
                               "`<job>-<id>/<split>/events.out.tfevents.*`, one TensorBoard run per split, each "
                               "stored metric event with its step and original wall time (scalars are 32-bit "
                               "floats in TensorBoard). Unpack it and run `tensorboard --logdir .`; no TensorFlow "
                               "needed. Works while the job runs too (the history so far).")
    def get(self, request, pk):
        job = get_job_for_user(request.user, pk)
        return exports.tensorboard_response(request.user, job, asgi=isinstance(request._request, ASGIRequest))
