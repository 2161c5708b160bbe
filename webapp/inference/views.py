"""Try-the-model page and its JSON endpoints; ONNX export of a job. Every view starts with
`get_job_for_user` (another user's job is a 404)."""

from __future__ import annotations

from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from models_zoo.contracts import fill_values, raw_columns
from webapp.inference import services
from webapp.inference.models import BatchPrediction, OnnxExport, Prediction
from webapp.jobs.access import get_job_for_user
from webapp.throttles import throttled_page


def _form_context(job) -> dict:
    kind, why = services.try_kind(job)
    ctx = {"job": job, "kind": kind, "why": why, "columns": [], "length": None, "classes": None}
    if kind is None:
        return ctx
    if job.architecture.startswith("hf_"):
        info = (job.dataset.info if job.dataset_id else {}) or {}
        ctx.update(hf=True, classes=info.get("classes"), task="lm" if kind == "lm" else "classification",
                   image_size=info.get("image_size"), channels=info.get("channels"), chat=info.get("kind") == "chat")
        return ctx
    info = services.model_config(job)["dataset"]
    fills = fill_values(info)  # the ingest imputed: an empty field gets the same value
    ctx["imputes"] = bool(fills)
    if kind == "tabular":
        from webapp.inference.table import table_hints

        categorical = info.get("categorical") or {}
        hints = table_hints(job.dataset.directory if job.dataset_id and job.dataset else None, info)
        ctx["columns"] = [{"name": c, "choices": categorical.get(c), "fill": fills.get(c),
                           "range": hints["ranges"].get(c, "")} for c in raw_columns(info)]
        ctx["examples"] = hints["rows"]
    elif kind == "sequence":
        ctx["length"] = int(info["input_shape"][0])
    elif kind == "image":
        ctx["image_size"], ctx["channels"] = info.get("image_size"), info.get("channels")
    ctx["classes"] = info.get("classes")
    ctx["task"] = info.get("task")
    return ctx


@require_GET
def try_page(request, pk):
    job = get_job_for_user(request.user, pk)
    ctx = _form_context(job)
    ctx["batch_kind"], ctx["batch_why"] = services.batch_kind(job)
    if ctx["batch_kind"]:
        from django.conf import settings

        ctx["batch_extensions"] = ",".join(services.BATCH_EXTENSIONS[ctx["batch_kind"]])
        ctx["batch_limit_mb"] = settings.TRAINYARD_MAX_BATCH_MB
        ctx["batches"] = BatchPrediction.objects.filter(job=job, user=request.user)[:services.KEEP_BATCHES]
    return render(request, "jobs/try.html", ctx)


@require_POST
@throttled_page("try")
def predict(request, pk):
    job = get_job_for_user(request.user, pk)
    data = {k: request.POST.get(k, "") for k in ("text", "sequence", "prompt", "temperature", "top_k", "length", "top_p",
                                                "max_new_tokens")}
    features = {k[len("f:"):]: v for k, v in request.POST.items() if k.startswith("f:")}
    if features:
        data["features"] = features
    elif request.POST.get("features"):
        data["features"] = request.POST["features"]  # one comma-separated line, in column order
    try:
        p = services.create_prediction(request.user, job, data, request.FILES.get("image"))
    except services.TryError as exc:
        return JsonResponse({"error": exc.message}, status=exc.status)
    return JsonResponse({"prediction": p.to_dict()}, status=202)


@require_GET
def prediction(request, pk):
    """One of the user's tries of this job (`?id=`): the page polls it when the socket is down."""
    job = get_job_for_user(request.user, pk)
    p = Prediction.objects.filter(job=job, user=request.user, pk=_uuid(request.GET.get("id"))).first()
    if p is None:
        raise Http404
    return JsonResponse({"prediction": p.to_dict()})


def _uuid(value):
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Http404 from None


@require_http_methods(["GET", "POST"])
def onnx(request, pk):
    """GET: the ONNX export's state; POST: start it (again, after a failure). Starting writes
    model.onnx into the job's artifacts: another user's job needs `jobs.change_job` for that."""
    job = get_job_for_user(request.user, pk, write=request.method == "POST")
    if request.method == "POST":
        try:
            export = services.request_onnx_export(request.user, job)
        except services.TryError as exc:
            return JsonResponse({"error": exc.message}, status=exc.status)
        return JsonResponse({"onnx": export.to_dict()}, status=202)
    export = OnnxExport.objects.filter(job=job).first()
    return JsonResponse({"onnx": export.to_dict() if export else None,
                         "artifacts": [a.to_dict() for a in job.artifacts.all()]})


@require_POST
@throttled_page("try")
def batch_create(request, pk):
    """Try many: a file of inputs in the dataset's format, predicted by a task on `infer`."""
    job = get_job_for_user(request.user, pk)
    try:
        b = services.create_batch(request.user, job, request.FILES.get("file"))
    except services.TryError as exc:
        return JsonResponse({"error": exc.message}, status=exc.status)
    return JsonResponse({"batch": b.to_dict()}, status=202)


def _batch_for(request, pk, batch_id) -> BatchPrediction:
    """One of the user's own try-many files of a job they may see (anyone else's: 404)."""
    job = get_job_for_user(request.user, pk)
    b = BatchPrediction.objects.filter(job=job, user=request.user, pk=batch_id).first()
    if b is None:
        raise Http404
    return b


@require_GET
def batch_status(request, pk, batch_id):
    return JsonResponse({"batch": _batch_for(request, pk, batch_id).to_dict()})


@require_GET
def batch_download(request, pk, batch_id):
    b = _batch_for(request, pk, batch_id)
    if b.status != BatchPrediction.Status.DONE or not b.output_path.is_file():
        raise Http404
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in b.filename.rsplit(".", 1)[0])[:80] or "inputs"
    response = FileResponse(open(b.output_path, "rb"), as_attachment=True, filename=f"{stem}-predictions.csv",
                            content_type="text/csv")
    response["X-Content-Type-Options"] = "nosniff"
    return response
