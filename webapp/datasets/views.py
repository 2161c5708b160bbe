from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from models_zoo import kinds
from webapp.accounts import storage
from webapp.datasets import samples, services
from webapp.datasets.access import get_ingest_failure_for_user, ingest_failures_for
from webapp.datasets.models import Dataset, IngestFailure
from webapp.datasets.uploads import upload_too_large_message
from webapp.datasets.validation import DatasetError
from webapp.jobs.access import datasets_for, get_dataset_for_user, may_write
from webapp.projects.access import creatable_projects, project_filter, resolve_for_create
from webapp.throttles import throttled_page

UPLOAD_OPTIONS = kinds.option_names()  # every kind's options, from the kinds registry
# The form's own fields besides UPLOAD_FIELDS and the options (upload: a finished tus upload's id).
FORM_FIELDS = ("csrfmiddlewaretoken", "file", "upload", "project")


def _list_context(request, **extra) -> dict:
    usage = storage.summary(request.user)
    used, quota = usage["used"], usage["quota"]
    return {"datasets": project_filter(datasets_for(request.user), request.GET.get("project", ""))[:500], "failures": ingest_failures_for(request.user),
            "errors": [], "values": {}, "kinds": Dataset.Kind.choices, "image_size_range": kinds.IMAGE_SIZE_RANGE,
            "projects": creatable_projects(request.user), "used": used, "quota": quota, "usage": usage["by_category"], "used_pct": min(100, round(100 * used / quota)) if quota else 0, **extra}


@require_POST
def detect_kind(request):
    """The kind the upload would be detected as, from the file's name and first bytes (the page
    sends them when a file is chosen, to show that kind's options): the server's own rule."""
    from webapp.datasets.validation import HEAD_BYTES, detect_kind_of_head

    head = request.FILES.get("head")
    filename = request.POST.get("filename", "")[:255]
    if head is None or not filename:
        return JsonResponse({"error": "send the file's name and its first bytes"}, status=400)
    kind = detect_kind_of_head(head.read(HEAD_BYTES), filename)
    return JsonResponse({"kind": kind, "label": dict(Dataset.Kind.choices).get(kind, kind)})


def dataset_list(request):
    if request.method == "POST":
        upload = None
        try:
            uploaded = request.FILES.get("file")  # parses the body; the size check runs while streaming
            if getattr(request, "upload_too_large", False):
                raise DatasetError(upload_too_large_message())
            services.check_upload_fields([*request.POST, *request.FILES], FORM_FIELDS)
            if request.POST.get("upload"):  # the page sent the file in chunks first
                upload = services.upload_for(request.user, request.POST["upload"])
            project, project_error = resolve_for_create(request.user, request.POST.get("project"))
            if project_error:
                raise DatasetError(f"project: {project_error}")
            ds = services.create_dataset(
                request.user, uploaded, upload=upload, name=request.POST.get("name", ""), project=project,
                description=request.POST.get("description", ""), kind=request.POST.get("kind", "auto"),
                **{k: request.POST.get(k) for k in UPLOAD_OPTIONS},
            )
        except DatasetError as exc:
            if upload is not None:
                services.abort_upload(upload)  # a rejected file leaves nothing behind, chunked or not
            return render(request, "datasets/list.html", _list_context(request, errors=[str(exc)],
                                                                        values=request.POST), status=400)
        if IngestFailure.objects.filter(pk=ds.pk).exists():  # failed at once (the queue was down): see the notice
            return redirect("datasets:list")
        messages.success(request, f"Uploaded “{ds.name}”; checking it now.")
        return redirect("datasets:detail", pk=ds.pk)
    return render(request, "datasets/list.html", _list_context(request))


@require_POST
def failure_dismiss(request, pk):
    services.dismiss_failure(get_ingest_failure_for_user(request.user, pk))
    return redirect("datasets:list")


def _bars(counts: dict | None) -> list[dict]:
    items = sorted((counts or {}).items(), key=lambda kv: -kv[1])
    top = max([c for _, c in items] or [1]) or 1
    return [{"name": k, "count": v, "pct": round(100 * v / top)} for k, v in items]


SPARK_W, SPARK_H = 240, 48


def _sparklines(series: list[dict] | None) -> list[dict]:
    """Preview sequences as SVG polyline points, on one vertical scale (so sizes compare)."""
    series = [s for s in (series or []) if s.get("values")]
    values = [v for s in series for v in s["values"]]
    if not values:
        return []
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    out = []
    for s in series:
        vals = s["values"]
        step = SPARK_W / max(1, len(vals) - 1)
        points = " ".join(f"{i * step:.1f},{SPARK_H - 2 - (v - lo) / span * (SPARK_H - 4):.1f}" for i, v in enumerate(vals))
        out.append({"label": s.get("label", ""), "points": points})
    return out


def dataset_detail(request, pk):
    try:
        ds = get_dataset_for_user(request.user, pk)
    except Http404:
        # The owner of a dataset whose ingest failed (the page was watching it) learns why on the
        # datasets page; anyone else gets the same 404 as for an id that never existed.
        get_ingest_failure_for_user(request.user, pk)
        return redirect("datasets:list")
    info = ds.info or {}
    previews = [{"name": cls, "files": files} for cls, files in (info.get("previews") or {}).items()]
    can_edit = may_write(request.user, ds)
    return render(request, "datasets/detail.html", {
        "ds": ds, "info": info, "bars": _bars(info.get("class_counts")), "previews": previews,
        "token_bars": _bars(info.get("token_counts")), "sparklines": _sparklines((info.get("preview") or {}).get("series")),
        "spark_w": SPARK_W, "spark_h": SPARK_H, "can_edit": can_edit,
        "shared_with": ds.shared_with.order_by("username") if can_edit else [],
    })


def dataset_preview(request, pk, name):
    """A preview thumbnail; only names the ingest listed are served, as attachments-safe PNGs."""
    ds = get_dataset_for_user(request.user, pk)
    listed = {f for files in (ds.info or {}).get("previews", {}).values() for f in files}
    path = ds.directory / "previews" / name
    if name not in listed or not path.is_file():
        raise Http404
    response = FileResponse(open(path, "rb"), content_type="image/png")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_POST
def dataset_edit(request, pk):
    ds = get_dataset_for_user(request.user, pk, write=True)
    try:
        services.update_dataset(ds, name=request.POST.get("name"), description=request.POST.get("description"),
                                actor=request.user)
        messages.success(request, "Saved.")
    except DatasetError as exc:
        messages.error(request, str(exc))
    return redirect("datasets:detail", pk=ds.pk)


@require_POST
def dataset_share(request, pk):
    ds = get_dataset_for_user(request.user, pk, write=True)
    username = request.POST.get("username", "")
    try:
        if request.POST.get("action") == "remove":
            services.unshare_dataset(ds, username, actor=request.user)
            messages.success(request, f"No longer shared with {username}.")
        else:
            services.share_dataset(ds, username, actor=request.user)
            messages.success(request, f"Shared read-only with {username.strip()}.")
    except DatasetError as exc:
        messages.error(request, str(exc))
    return redirect("datasets:detail", pk=ds.pk)


@require_POST
def dataset_delete(request, pk):
    ds = get_dataset_for_user(request.user, pk, write="delete")
    name = ds.name
    try:
        services.delete_dataset(ds, actor=request.user)
    except DatasetError as exc:
        messages.error(request, str(exc))
        return redirect("datasets:detail", pk=pk)
    messages.success(request, f"Dataset “{name}” deleted.")
    return redirect("datasets:list")


@require_POST
@throttled_page("upload")
def add_samples(request):
    """The getting-started panel's one click: a small sample dataset of every kind, ingested as
    uploads of this user (webapp/datasets/samples.py)."""
    try:
        created = samples.add_samples(request.user)
    except DatasetError as exc:  # over the quota, the queue down: nothing is kept
        messages.error(request, f"Could not add the sample datasets: {exc}")
        return redirect("datasets:list")
    if created:
        messages.success(request, f"Added {len(created)} sample dataset{'' if len(created) == 1 else 's'}; "
                                  "checking them now (a few seconds).")
    else:
        messages.info(request, "You have every sample dataset already.")
    return redirect("datasets:list")


@require_POST
@throttled_page("submit")
def first_job(request, pk):
    """The guided first job on a sample dataset: its recipe's settings (samples.SAMPLES), queued
    through submit_job like any other."""
    from webapp.jobs import services as jobs

    ds = get_dataset_for_user(request.user, pk)
    sample = samples.sample_for(ds)
    if sample is None or not sample.architecture:
        messages.error(request, "This dataset has no guided first job: choose the settings on the new-job form.")
        return redirect(f"{reverse('jobs:new')}?dataset={ds.pk}")
    try:
        job = jobs.submit_job(request.user, ds, sample.architecture, dict(sample.model_config),
                              dict(sample.train_config), name=f"First model: {ds.name}")
    except jobs.SubmitError as exc:
        messages.error(request, f"Could not queue the first job: {exc}")
        return redirect("datasets:detail", pk=ds.pk)
    messages.success(request, f"Job “{job.name}” queued: {sample.guide}.")
    return redirect("jobs:detail", pk=job.pk)
