"""What the OpenAPI schema says the API answers: typed bodies and the shared error responses.

These serializers only describe responses (the models' `to_dict()` build the bodies); the
schemathesis run in tests/webapp/api/test_schema_conformance.py checks every response against them.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

from models_zoo import kinds
from webapp.hub.models import LocalModel as LocalModelRow


class ErrorBody(serializers.Serializer):
    detail = serializers.CharField(help_text="what went wrong, written for the user")
    error = serializers.CharField(required=False, help_text="the same message, on the operations' own refusals "
                                                            "(read by the pages' scripts and older clients)")
    errors = serializers.DictField(child=serializers.CharField(), required=False,
                                   help_text="one message per refused field, e.g. train_config.epochs")


_WHY = {
    400: "The request was refused (a body that is not a JSON object, a bad field, a file the server "
         "cannot use); nothing was changed.",
    401: "No valid credentials: send `Authorization: Token <key>` (or sign in).",
    403: "Signed in, but not allowed (e.g. a write to a dataset shared with you read-only).",
    404: "No such object, or it belongs to someone else (the API does not tell the two apart).",
    409: "The object's state does not allow this now (e.g. deleting a job that is still running).",
    413: "The body is larger than the server accepts (TRAINYARD_MAX_REQUEST_MB, or a chunk above the "
         "chunk size).",
    415: "The body's media type is not one this operation reads (or a multipart body is malformed).",
    429: "Too many requests or too many active jobs; see Retry-After when present.",
    503: "A service the request needs (the job queue) is unreachable; nothing was kept.",
}


def errors(*codes: int) -> dict:
    """Responses for the error `codes` an operation can return, all with the one error body."""
    return {code: OpenApiResponse(ErrorBody, description=_WHY[code]) for code in codes}


# What every authenticated operation may answer, whatever it does (auth, throttles).
COMMON = (401, 403, 429)


# What every operation that reads a request body may answer as well.
BODY = (400, 415)


def responses(ok: dict, *codes: int) -> dict:
    """`ok` (status -> body) plus the common error responses and `codes`."""
    return {**ok, **errors(*sorted(set(COMMON) | set(codes)))}


# Artifact files, by extension: the media type each is served with (anything else is
# application/octet-stream: checkpoints, safetensors, ONNX, ZIPs of folders).
ARTIFACT_MEDIA_TYPES = {
    ".json": "application/json",
    ".md": "text/markdown",
    ".txt": "text/plain",
    ".png": "image/png",
    ".zip": "application/zip",
}
OCTET = "application/octet-stream"


def artifact_media_type(name: str) -> str:
    suffix = name[name.rfind("."):].lower() if "." in name else ""
    return ARTIFACT_MEDIA_TYPES.get(suffix, OCTET)


ARTIFACT_RESPONSES = {(200, t): OpenApiTypes.BINARY for t in (*ARTIFACT_MEDIA_TYPES.values(), OCTET)}


def _obj(**kw):
    return serializers.DictField(help_text=kw.pop("help_text", ""), **kw)


class Dataset(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    kind = serializers.CharField()
    status = serializers.ChoiceField(choices=["ingesting", "ready", "failed"])
    progress = serializers.FloatField()
    error = serializers.CharField(allow_blank=True)
    original_filename = serializers.CharField(allow_blank=True)
    size_bytes = serializers.IntegerField()
    info = _obj(help_text="what ingest found: classes, shapes, vocabulary size, ...; `splits` (source: provided or "
                          "seeded, column, train / val / test row counts) and, with missing=impute, `missing` "
                          "(the fill value of every column, and per imputed column how many cells)")
    owner = serializers.CharField()
    project = serializers.UUIDField(allow_null=True, help_text="its project (/api/projects/); null: the owner's personal space")
    options = _obj(help_text="the ingest options")
    created_at = serializers.DateTimeField()


class IngestFailure(serializers.Serializer):
    id = serializers.UUIDField(help_text="the id the dataset had")
    name = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.ChoiceField(choices=["failed"])
    error = serializers.CharField(help_text="why ingest refused the file")
    original_filename = serializers.CharField(allow_blank=True)
    owner = serializers.CharField()
    created_at = serializers.DateTimeField()


class DatasetGone(ErrorBody):
    """A 404 of a dataset id: for the owner of an upload that ingest refused, also that notice."""

    id = serializers.UUIDField(required=False, help_text="the id the dataset had")
    name = serializers.CharField(required=False)
    kind = serializers.CharField(required=False)
    status = serializers.ChoiceField(choices=["failed"], required=False)
    original_filename = serializers.CharField(required=False, allow_blank=True)
    owner = serializers.CharField(required=False)
    created_at = serializers.DateTimeField(required=False)


class DatasetListBody(serializers.Serializer):
    datasets = Dataset(many=True)
    failures = IngestFailure(many=True, help_text="your uploads that ingest refused, until dismissed")


class Upload(serializers.Serializer):
    id = serializers.UUIDField()
    filename = serializers.CharField()
    size = serializers.IntegerField()
    received = serializers.IntegerField(help_text="bytes stored so far: send the next chunk from here")
    chunk_bytes = serializers.IntegerField(help_text="the largest chunk the server accepts")


class UploadConflict(ErrorBody):
    received = serializers.IntegerField(help_text="bytes stored so far: resend from here")


class Shares(serializers.Serializer):
    shared_with = serializers.ListField(child=serializers.CharField())


class Project(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField()
    gpu_quota = serializers.IntegerField(allow_null=True, help_text="GPUs its jobs may use at once; null: no quota")
    role = serializers.ChoiceField(choices=["viewer", "member", "maintainer"], allow_null=True,
                                   help_text="your role in it (null: staff looking in)")
    created_at = serializers.DateTimeField()


class Member(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=["viewer", "member", "maintainer"])
    since = serializers.DateTimeField()


class ProjectDetail(Project):
    members = Member(many=True)


class ProjectListBody(serializers.Serializer):
    projects = Project(many=True)


class MemberListBody(serializers.Serializer):
    members = Member(many=True)


class Artifact(serializers.Serializer):
    name = serializers.CharField()
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()


class Job(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField(allow_blank=True)
    owner = serializers.CharField()
    project = serializers.UUIDField(allow_null=True, help_text="its project (/api/projects/); null: the owner's personal space")
    project_name = serializers.CharField(allow_null=True)
    dataset = serializers.UUIDField(allow_null=True)
    dataset_name = serializers.CharField(allow_null=True)
    class_names = serializers.ListField(child=serializers.JSONField(), allow_null=True)
    architecture = serializers.CharField()
    model_config = _obj(help_text="the architecture's settings (lists as JSON arrays)")
    train_config = _obj()
    status = serializers.ChoiceField(choices=["queued", "running", "succeeded", "failed", "cancelled"])
    error = serializers.CharField(allow_blank=True)
    cancel_requested = serializers.BooleanField()
    attempts = serializers.IntegerField()
    worker = serializers.CharField(allow_blank=True, allow_null=True)
    epoch = serializers.IntegerField(allow_null=True)
    step = serializers.IntegerField(allow_null=True)
    total_steps = serializers.IntegerField(allow_null=True)
    eta_seconds = serializers.FloatField(allow_null=True)
    metrics = _obj(allow_null=True, help_text="the validation metrics of the final model")
    test_metrics = _obj(help_text="the dataset's test split, evaluated once on the final model after training "
                                  "(never used for early stopping or keep-best); {} without a test split")
    lineage = _obj(help_text="continued training: {job, name, checkpoint, epoch} of the job whose checkpoint this "
                             "one started from; {} otherwise")
    summary = _obj(help_text="validation metrics as the job runs: {last: the latest epoch's, best: the best "
                             "epoch's (lowest loss-like, highest otherwise)}; what search and sort read")
    tags = serializers.ListField(child=serializers.CharField(), help_text="the owner's tags, sorted")
    note = serializers.CharField(allow_blank=True, help_text="the owner's note, Markdown")
    archived = serializers.BooleanField(help_text="hidden from the default list; nothing is deleted")
    last_seq = serializers.IntegerField()
    queue_position = serializers.IntegerField(allow_null=True)
    wait_reason = serializers.CharField(allow_blank=True)
    priority = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    artifacts = Artifact(many=True)


JobListBody = inline_serializer("JobList", {
    "jobs": Job(many=True), "total": serializers.IntegerField(help_text="jobs matching, on every page"),
    "page": serializers.IntegerField(), "pages": serializers.IntegerField(), "per_page": serializers.IntegerField(),
    "sort": serializers.CharField(),
    "capped": serializers.BooleanField(help_text="pages reach the first 10000 matches of this order only"),
})
BulkBody = inline_serializer("JobBulkResult", {
    "action": serializers.CharField(),
    "done": serializers.ListField(child=serializers.UUIDField(), help_text="the jobs changed"),
    "skipped": serializers.ListField(child=inline_serializer("JobBulkSkip", {
        "id": serializers.CharField(), "reason": serializers.CharField()}), help_text="the jobs left as they were, "
        "and why (not yours, no such job, already finished, ...)"),
})
RepeatBody = inline_serializer("JobRepeatResult", {"jobs": Job(many=True)})


class Trial(serializers.Serializer):
    number = serializers.IntegerField()
    job = serializers.UUIDField(allow_null=True, help_text="the trial's ordinary job (null: refused before it ran)")
    job_status = serializers.CharField(allow_null=True)
    params = _obj(help_text="the searched settings' values, by key (train.<name>, model.<name>)")
    state = serializers.ChoiceField(choices=["running", "complete", "pruned", "failed", "cancelled"])
    value = serializers.FloatField(allow_null=True, help_text="the metric of the trial's final model")
    intermediate_values = _obj(help_text="epoch -> the validation metric stored for it")
    pruned_at_epoch = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)


class Sweep(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    owner = serializers.CharField()
    project = serializers.UUIDField(allow_null=True, help_text="its project (/api/projects/); null: the owner's personal space")
    dataset = serializers.UUIDField(allow_null=True)
    architecture = serializers.CharField()
    base_model_config = _obj()
    base_train_config = _obj()
    space = _obj(help_text="the validated search space")
    metric = serializers.CharField()
    direction = serializers.ChoiceField(choices=["minimize", "maximize"])
    budget = serializers.IntegerField()
    concurrency = serializers.IntegerField()
    seed = serializers.IntegerField()
    pruner = serializers.ChoiceField(choices=["median", "halving", "none"])
    status = serializers.ChoiceField(choices=["running", "succeeded", "cancelled", "failed"])
    error = serializers.CharField(allow_blank=True)
    wait_reason = serializers.CharField(allow_blank=True)
    best = Trial(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    trials = Trial(many=True, required=False)


SweepListBody = inline_serializer("SweepList", {"sweeps": Sweep(many=True)})

EVENT_KINDS = ["status", "progress", "metric", "samples", "confusion", "log", "resources"]
FIELD_KINDS = ["int", "float", "str", "bool", "choice", "ints"]


class Event(serializers.Serializer):
    """One numbered event; the other fields depend on `kind` (see the websocket description)."""

    v = serializers.IntegerField()
    job = serializers.UUIDField()
    seq = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=EVENT_KINDS)


EventsBody = inline_serializer("JobEvents", {
    "job": serializers.UUIDField(),
    "last_seq": serializers.IntegerField(),
    "events": Event(many=True),
    "downsampled": serializers.BooleanField(required=False, help_text="history=1 only"),
    "metric_events": serializers.IntegerField(required=False, help_text="history=1 only"),
    "omitted": serializers.DictField(child=serializers.IntegerField(), required=False,
                                     help_text="history=1 only: events left out, by kind"),
})


class Field(serializers.Serializer):
    name = serializers.CharField()
    default = serializers.JSONField(allow_null=True, help_text="a JSON value of the field's kind (lists as arrays)")
    label = serializers.CharField()
    kind = serializers.ChoiceField(choices=FIELD_KINDS)
    min = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)
    choices = serializers.ListField(child=serializers.ListField(child=serializers.CharField()), allow_null=True)
    help = serializers.CharField(allow_blank=True)
    max_items = serializers.IntegerField()
    applies_when = serializers.DictField(
        child=serializers.ListField(child=serializers.JSONField()), allow_null=True,
        help_text="when the setting does anything: {other field or context key (task, kind, cuda): allowed values}")


ArchitecturesBody = inline_serializer("Architectures", {
    "architectures": inline_serializer("Architecture", {
        "name": serializers.CharField(), "label": serializers.CharField(),
        "dataset_kinds": serializers.ListField(child=serializers.CharField()),
        "model_config": Field(many=True),
    }, many=True),
    "train_config": Field(many=True),
    "devices": serializers.CharField(help_text="what a job's `gpus` (devices on one worker) may be on the "
                                               "workers online now"),
    "nodes": serializers.CharField(help_text="what a job's `nodes` (machines, each with `gpus` devices) may be "
                                             "on the workers online now"),
})


class LocalModel(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    reference = serializers.CharField(help_text="use as model_config.model of a Hugging Face job")
    task = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    uploaded = serializers.BooleanField()
    owner = serializers.CharField(allow_null=True)
    project = serializers.UUIDField(allow_null=True, help_text="its project (/api/projects/); null: the owner's personal space")
    size_bytes = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["extracting", "ready", "failed"])
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


ModelListBody = inline_serializer("LocalModels", {"models": LocalModel(many=True)})


class Prediction(serializers.Serializer):
    id = serializers.UUIDField()
    job = serializers.UUIDField()
    status = serializers.CharField()
    inputs = serializers.JSONField()
    image_name = serializers.CharField(allow_blank=True, allow_null=True)
    result = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    seconds = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()


PredictionBody = inline_serializer("PredictionBody", {"prediction": Prediction()})


class Onnx(serializers.Serializer):
    job = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["pending", "done", "failed"])
    error = serializers.CharField(allow_blank=True)
    max_abs_diff = serializers.FloatField(allow_null=True)
    meta = serializers.JSONField(allow_null=True)


OnnxBody = inline_serializer("OnnxBody", {"onnx": Onnx(allow_null=True),
                                          "artifacts": Artifact(many=True, required=False)})

class MlflowExport(serializers.Serializer):
    id = serializers.UUIDField()
    job = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["pending", "running", "done", "failed"])
    error = serializers.CharField(allow_blank=True, help_text="why it failed, written for the user")
    tracking_uri = serializers.CharField()
    experiment = serializers.CharField()
    register_model = serializers.BooleanField()
    model_name = serializers.CharField(allow_blank=True)
    run_id = serializers.CharField(allow_blank=True)
    experiment_id = serializers.CharField(allow_blank=True)
    run_url = serializers.CharField(allow_blank=True, help_text="the run in the MLflow UI (http(s) servers)")
    model_version = serializers.CharField(allow_blank=True, help_text="with register_model, once done")
    counts = serializers.DictField(child=serializers.IntegerField(),
                                   help_text="params, metrics and artifacts logged, once done")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


MlflowExportList = inline_serializer("MlflowExports", {"exports": MlflowExport(many=True)})

WEBSOCKETS = """
## Live events (websockets)

OpenAPI cannot describe websockets, so they are described here (and in the README).

* `ws(s)://HOST/ws/jobs/<job id>/`: one job's live events, for whoever may see the job (session
  cookie; the Origin must be this site). Close codes: 4401 not signed in, 4404 no such job (or not
  yours). Frames: `{"type": "events", "events": [...]}`, each event `{"v": 1, "job": id, "seq": n,
  "kind": ..., ...}` numbered per job. Kinds: `status {status, worker?, error?}`, `progress {epoch,
  epochs, step, total_steps, eta_seconds, samples_seen}`, `metric {split, step, epoch, values}`,
  `samples {epoch, items}`, `confusion {epoch, matrix}`, `log {level, text}`, `resources {t, cpu_percent,
  rss, processes, cpus, gpu_memory?, gpu_memory_total?, gpu_util?, gpu_source?}` (the job's process
  tree, sampled by its worker's heartbeat: CPU % where 100 is one core, bytes). After a gap or a
  reconnect send `{"after": last_seq_seen}`: the answer is `{"type": "events", "events": [...],
  "replay": true}` (the same events as `GET /api/jobs/{id}/events/?after=N`).
* `ws(s)://HOST/ws/user/`: the signed-in user's own updates: `{"type": "job", "job": {...}}` when one
  of their jobs changes state, `{"type": "prediction", "prediction": {...}}` when a try is answered,
  `{"type": "onnx", "onnx": {...}}` when an ONNX export ends, `{"type": "mlflow", "mlflow": {...}}` when an
  MLflow push starts and ends.

Trying a model (`POST /api/jobs/{id}/predictions/`), the ONNX export (`POST /api/jobs/{id}/onnx/`) and
the MLflow push (`POST /api/jobs/{id}/exports/mlflow/`) answer 202 and finish in a worker: poll their
GET operation, or watch `ws/user/`.
"""


def settings() -> dict:
    """drf-spectacular settings of the served schema: the websockets in its description, and one
    name per enum (several fields are called `kind` or `task`), and request bodies apart from
    responses, so file fields are documented as binary (multipart), not as URIs."""
    return {
        "COMPONENT_SPLIT_REQUEST": True,
        "DESCRIPTION": "Datasets, training jobs, live events and model downloads.\n" + WEBSOCKETS,
        "ENUM_NAME_OVERRIDES": {
            "EventKindEnum": EVENT_KINDS,
            "FieldKindEnum": FIELD_KINDS,
            "DatasetKindEnum": ["auto", *kinds.KINDS],
            "DatasetTaskEnum": [c for c, _ in kinds.TASKS],
            "ModelTaskEnum": LocalModelRow.Task.choices,
        },
    }
