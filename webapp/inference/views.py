"""Try-the-model page and its JSON endpoints; ONNX export of a job. Every view starts with
`get_job_for_user` (another user's job is a 404)."""

from __future__ import annotations

from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from models_zoo.contracts import fill_values, raw_columns
from webapp.inference import services
from webapp.inference.models import OnnxExport, Prediction
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
        categorical = info.get("categorical") or {}
        ctx["columns"] = [{"name": c, "choices": categorical.get(c), "fill": fills.get(c)} for c in raw_columns(info)]
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
    return render(request, "jobs/try.html", _form_context(job))


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
