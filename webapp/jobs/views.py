from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

import models_zoo
from models_zoo.hf import is_hf
from models_zoo.hparams import TrainConfig
from models_zoo.schema import describe
from webapp.datasets.models import Dataset
from webapp.accounts import audit
from webapp.jobs import services
from webapp.jobs.access import datasets_for, get_job_for_user, jobs_for


def job_list(request):
    return render(request, "jobs/list.html", {"jobs": jobs_for(request.user)[:500]})


def _form_context(request, values: dict, errors: dict) -> dict:
    datasets = datasets_for(request.user).filter(status=Dataset.Status.READY)
    architectures = [
        {"name": e.name, "label": e.label, "kinds": list(e.kinds), "fields": _fields(request.user, e)}
        for e in models_zoo.REGISTRY.values()
    ]
    return {"datasets": datasets, "architectures": architectures, "train_fields": describe(TrainConfig),
            "values": values, "errors": errors}


def _fields(user, entry) -> list[dict]:
    fields = entry.describe()
    if is_hf(entry.name):  # the model picker offers the local models of the entry's task
        from webapp.hub.services import choices_for

        for f in fields:
            if f["name"] == "model":
                f["suggestions"] = choices_for(user, entry.name)
    return fields


def job_new(request):
    if request.method != "POST":
        initial = {}
        if request.GET.get("dataset"):
            initial["dataset"] = request.GET["dataset"]
        if request.GET.get("clone"):
            initial = _clone_values(get_job_for_user(request.user, request.GET["clone"]))
        return render(request, "jobs/new.html", _form_context(request, initial, {}))
    post = request.POST
    arch = post.get("architecture", "")
    dataset = None
    if _is_uuid(post.get("dataset")):
        dataset = datasets_for(request.user).filter(pk=post["dataset"]).first()
    prefix = f"m_{arch}__"
    model_config = {k[len(prefix):]: v for k, v in post.items() if k.startswith(prefix)}
    train_fields = {f["name"]: f for f in describe(TrainConfig)}
    train_config = {k[3:]: v for k, v in post.items() if k.startswith("tc_") and k[3:] in train_fields}
    try:
        job = services.submit_job(request.user, dataset, arch, model_config, train_config, name=post.get("name", ""))
    except services.SubmitError as exc:
        return render(request, "jobs/new.html", _form_context(request, dict(post.items()), exc.errors),
                      status=exc.status)
    messages.success(request, f"Job “{job.name}” queued.")
    return redirect("jobs:detail", pk=job.pk)


def _form_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "true" if value is True else "" if value is False else str(value)


def _clone_values(job) -> dict:
    """The new-job form filled in from an earlier job, to edit and queue again."""
    values = {"name": f"{job.name} (copy)", "dataset": str(job.dataset_id or ""), "architecture": job.architecture}
    values.update({f"m_{job.architecture}__{k}": _form_value(v) for k, v in job.model_config.items()})
    values.update({f"tc_{k}": _form_value(v) for k, v in job.train_config.items()})
    return values


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def job_compare(request):
    """Several jobs side by side: overlaid validation curves, hyperparameters, final metrics."""
    ids = [i for i in request.GET.getlist("ids") + request.GET.get("id", "").split(",") if i]
    jobs = [get_job_for_user(request.user, pk) for pk in dict.fromkeys(ids)][:12]
    params = sorted({f"model.{k}" for j in jobs for k in j.model_config} | {k for j in jobs for k in j.train_config})
    metric_names = sorted({k for j in jobs for k, v in j.metrics.items() if isinstance(v, (int, float))})
    rows = [{"name": p, "values": [_param(j, p) for j in jobs]} for p in params]
    metrics = [{"name": m, "values": [j.metrics.get(m) for j in jobs]} for m in metric_names]
    return render(request, "jobs/compare.html", {
        "jobs": jobs, "rows": rows, "metrics": metrics,
        "compare_json": [{"id": str(j.pk), "name": j.name} for j in jobs],
    })


def _param(job, name: str):
    if name.startswith("model."):
        return job.model_config.get(name[6:], "")
    return job.train_config.get(name, "")


def job_detail(request, pk):
    job = get_job_for_user(request.user, pk)
    return render(request, "jobs/detail.html", {"job": job, "job_json": job.to_dict()})


@require_POST
def job_cancel(request, pk):
    job = get_job_for_user(request.user, pk, write=True)
    job = services.cancel_job(job, actor=request.user)
    if job.status == job.Status.CANCELLED:
        messages.info(request, "Job cancelled.")
    elif job.cancel_requested and not job.is_final:
        messages.info(request, "Cancel requested; the job stops at the next step.")
    else:
        messages.warning(request, f"The job is already {job.get_status_display().lower()}.")
    return redirect("jobs:detail", pk=job.pk)


@require_POST
def job_delete(request, pk):
    job = get_job_for_user(request.user, pk, write=True)
    if services.delete_job(job, actor=request.user):
        messages.success(request, f"Job “{job.name}” deleted.")
        return redirect("jobs:list")
    messages.error(request, "Cancel the job before deleting it.")
    return redirect("jobs:detail", pk=job.pk)


def artifact_download(request, pk, name):
    job = get_job_for_user(request.user, pk)
    return artifact_response(job, name, request.user)


def artifact_response(job, name: str, actor) -> FileResponse:
    artifact = job.artifacts.filter(name=name).first()
    if artifact is None or not artifact.path.is_file():
        raise Http404
    if services.file_sha256(artifact.path) != artifact.sha256:
        raise Http404("the stored file does not match its checksum")
    audit.record(actor, "artifact.download", job, file=name)
    response = FileResponse(open(artifact.path, "rb"), as_attachment=True, filename=artifact.name)
    response["X-Content-Type-Options"] = "nosniff"
    return response
