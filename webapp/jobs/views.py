from __future__ import annotations

import uuid

from django.contrib import messages
from django.db.models import Q
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

import models_zoo
from models_zoo.defaults import RULE as ADAPTIVE_RULE
from models_zoo.hf import DEFAULTS_RULE, METHODS, fine_tune_defaults, is_hf
from models_zoo.hparams import TASK_METRICS, TrainConfig
from models_zoo.schema import describe
from webapp.datasets.models import Dataset
from webapp.accounts import audit
from webapp.jobs import lifecycle, scheduler, services
from webapp.jobs.access import datasets_for, get_job_for_user, jobs_for
from webapp.jobs.models import Job, JobEvent, queue_positions
from webapp.throttles import throttled_page


LIST_LIMIT = 500


def job_list(request):
    """The jobs the user may see (staff: all), filtered; `?format=json` gives the same rows for
    the page's live refresh (same filters, same access rule)."""
    visible = jobs_for(request.user)
    filters = {k: request.GET.get(k, "").strip()[:200] for k in ("q", "status", "dataset", "architecture")}
    jobs = visible
    if filters["status"] in Job.Status.values:
        jobs = jobs.filter(status=filters["status"])
    if _is_uuid(filters["dataset"]):
        jobs = jobs.filter(dataset_id=filters["dataset"])
    if filters["architecture"]:
        jobs = jobs.filter(architecture=filters["architecture"])
    if q := filters["q"]:
        match = (Q(name__icontains=q) | Q(architecture__icontains=q) | Q(dataset__name__icontains=q)
                 | Q(worker_name__icontains=q) | Q(status__iexact=q))
        if request.user.is_staff:
            match |= Q(owner__username__icontains=q)
        jobs = jobs.filter(match)
    rows = job_rows(list(jobs[:LIST_LIMIT]))
    if request.GET.get("format") == "json":
        return JsonResponse({"jobs": rows, "limit": LIST_LIMIT})
    datasets = sorted({(str(d), n) for d, n in visible.exclude(dataset=None).values_list("dataset_id", "dataset__name")},
                      key=lambda x: x[1].lower())
    architectures = sorted(set(visible.values_list("architecture", flat=True)))
    return render(request, "jobs/list.html", {
        "rows": rows, "filters": filters, "statuses": Job.Status.choices, "datasets": datasets,
        "architectures": architectures, "filtered": any(filters.values()), "limit": LIST_LIMIT,
        "show_owner": request.user.is_staff,
    })


def monitored(job: Job) -> tuple[str, str]:
    """The metric that picks the job's best epoch and whether higher ("max") or lower is better."""
    task = ((job.dataset.info or {}).get("task") if job.dataset_id and job.dataset else None) or (
        "classification" if "accuracy" in (job.metrics or {}) else "regression" if "r2" in (job.metrics or {}) else "lm")
    name = (job.train_config or {}).get("monitor", "auto")
    if name == "auto":
        name = "accuracy" if task == "classification" else "loss"
    return name, TASK_METRICS.get(task, {}).get(name, "min" if name in ("loss", "mse", "mae", "perplexity") else "max")


def job_rows(jobs: list[Job]) -> list[dict]:
    """What the jobs list shows of each job: status, queue position, worker, progress and ETA,
    best validation metric, duration. A few queries for the whole page, not per row."""
    positions = queue_positions(jobs)
    running = [j.pk for j in jobs if j.status == Job.Status.RUNNING]
    val_events: dict = {}
    if running:
        for job_id, data in JobEvent.objects.filter(job_id__in=running, kind="metric", data__split="val").values_list(
                "job_id", "data"):
            val_events.setdefault(job_id, []).append(data)
    now = timezone.now()
    rows = []
    for j in jobs:
        monitor, mode = monitored(j)
        best = None
        if j.status == Job.Status.RUNNING:
            for data in val_events.get(j.pk, []):
                v = (data.get("values") or {}).get(monitor)
                if isinstance(v, (int, float)) and (best is None or (v > best if mode == "max" else v < best)):
                    best = v
        elif isinstance((j.metrics or {}).get(monitor), (int, float)):
            best = j.metrics[monitor]
        duration = (j.finished_at or now) - j.started_at if j.started_at else None
        rows.append({
            "id": str(j.pk), "name": j.name, "url": reverse("jobs:detail", args=[j.pk]),
            "status": j.status, "status_label": j.get_status_display(),
            "cancel_requested": j.cancel_requested and not j.is_final,
            "queue_position": positions.get(j.pk),
            "wait_reason": j.wait_reason if j.status == Job.Status.QUEUED else "",
            "queue_note": j.queue_note(positions.get(j.pk)),
            "worker": j.worker_name, "epoch": j.epoch, "epochs": (j.train_config or {}).get("epochs"),
            "step": j.step, "total_steps": j.total_steps,
            "progress": 1.0 if j.status == Job.Status.SUCCEEDED else round(j.progress_fraction, 4),
            "eta_seconds": j.eta_seconds if j.status == Job.Status.RUNNING else None,
            "best_metric": monitor, "best_value": best,
            "duration_seconds": round(duration.total_seconds(), 1) if duration else None,
            "architecture": j.architecture,
            "dataset": str(j.dataset_id) if j.dataset_id else None,
            "dataset_name": j.dataset.name if j.dataset_id and j.dataset else None,
            "owner": j.owner.get_username(), "created_at": j.created_at.isoformat(),
            "created_label": timezone.localtime(j.created_at).strftime("%Y-%m-%d %H:%M"),
        })
    return rows


def _form_context(request, values: dict, errors: dict) -> dict:
    datasets = datasets_for(request.user).filter(status=Dataset.Status.READY)
    architectures = [
        {"name": e.name, "label": e.label, "kinds": list(e.kinds), "fields": _fields(request.user, e)}
        for e in models_zoo.REGISTRY.values()
    ]
    # The training fields the page swaps when an HF architecture or its method is chosen (fields
    # the user has not edited): fine-tuning defaults, not training from scratch's.
    train_defaults = {"zoo": {f["name"]: f["default"] for f in describe(TrainConfig)},
                      "hf": {m: fine_tune_defaults(m) for m, _ in METHODS}}
    # The Devices field says what it would get, from the workers online now.
    train_fields = [dict(f, help=f"{f['help']}; {scheduler.devices_offer()}") if f["name"] == "gpus" else f
                    for f in describe(TrainConfig)]
    return {"datasets": datasets, "architectures": architectures, "train_fields": train_fields,
            "values": values, "errors": errors, "train_defaults": train_defaults,
            "cuda_context": {True: "true", False: "false"}.get(scheduler.cuda_available(), ""),
            "fine_tune_rule": DEFAULTS_RULE, "adaptive_rule": ADAPTIVE_RULE, "fresh_form": not values.get("architecture")}


def _fields(user, entry) -> list[dict]:
    fields = entry.describe()
    if is_hf(entry.name):  # the model picker offers the local models of the entry's task
        from webapp.hub.services import choices_for

        for f in fields:
            if f["name"] == "model":
                f["suggestions"] = choices_for(user, entry.name)
                if f["suggestions"]:  # a local model always loads; a Hub id needs workers online to the Hub
                    f["default"] = f["suggestions"][0][0]
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
    model_config, train_config = _posted_configs(post, arch)
    # Fields the page filled with the adaptive defaults and the user left alone: not sent as
    # settings, so submit_job resolves them (models_zoo.defaults) as for an API request without them.
    for name in post.get("auto_fields", "").split(","):
        train_config.pop(name.strip(), None)
    if is_hf(arch) and post.get("memory_confirmed") != "1" and (warning := _memory_warning(request, arch, model_config,
                                                                                           train_config)):
        context = _form_context(request, dict(post.items()), {})
        context["memory_warning"] = warning
        return render(request, "jobs/new.html", context, status=409)
    try:
        job = services.submit_job(request.user, dataset, arch, model_config, train_config, name=post.get("name", ""),
                                  min_gpu_memory_gb=_min_gpu(post.get("min_gpu_memory_gb", "")))
    except services.SubmitError as exc:
        return render(request, "jobs/new.html", _form_context(request, dict(post.items()), exc.errors),
                      status=exc.status)
    messages.success(request, f"Job “{job.name}” queued.")
    return redirect("jobs:detail", pk=job.pk)


def _posted_configs(data, arch: str) -> tuple[dict, dict]:
    prefix = f"m_{arch}__"
    model_config = {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
    train_fields = {f["name"]: f for f in describe(TrainConfig)}
    train_config = {k[3:]: v for k, v in data.items() if k.startswith("tc_") and k[3:] in train_fields}
    return model_config, train_config


def memory_estimate(request):
    """GET with the job form's fields: the GPU memory estimate of that Hugging Face job (the form
    shows it, fills the minimum GPU memory from it, and warns when no registered GPU fits)."""
    from webapp.jobs.memory import job_estimate

    if request.method != "GET":
        return JsonResponse({"error": "GET only"}, status=405)
    arch = request.GET.get("architecture", "")
    model_config, train_config = _posted_configs(request.GET, arch)
    return JsonResponse(job_estimate(request.user, arch, model_config, train_config))


def _memory_warning(request, arch: str, model_config: dict, train_config: dict) -> str:
    """Why no registered GPU can hold this job ("" when one can, or nothing is known)."""
    from webapp.jobs.memory import job_estimate

    return job_estimate(request.user, arch, model_config, train_config).get("warning", "")


def _min_gpu(value: str) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return 0  # refused by submit_job with its message


def _form_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "true" if value is True else "" if value is False else str(value)


def _clone_values(job) -> dict:
    """The new-job form filled in from an earlier job, to edit and queue again."""
    values = {"name": f"{job.name} (copy)", "dataset": str(job.dataset_id or ""), "architecture": job.architecture}
    model_config = dict(job.model_config)
    if is_hf(job.architecture):
        from models_zoo.hf import upgrade

        try:  # settings stored before `method` (freeze_encoder=true) show as the method they meant
            model_config = upgrade(model_config)
        except ValueError:
            pass
    values.update({f"m_{job.architecture}__{k}": _form_value(v) for k, v in model_config.items()})
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
    for row in rows:
        row["differs"] = len({repr(v) for v in row["values"]}) > 1
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
    monitor, mode = monitored(job)
    from webapp.exports.services import file_root

    model_settings, train_settings = services.shown_settings(job)
    return render(request, "jobs/detail.html", {"job": job, "job_json": job.to_dict(), "monitor": monitor,
                                                "model_settings": model_settings, "train_settings": train_settings,
                                                "queue_note": job.queue_note(job.queue_position),
                                                "monitor_mode": mode, "mlflow_file_root": file_root(),
                                                **outputs_context(job, request.user)})


def job_outputs(request, pk):
    """The job page's outputs (try, continue, checkpoint, model files, ONNX) as an HTML fragment,
    which the live page fetches when the job ends, so they appear without a reload."""
    job = get_job_for_user(request.user, pk)
    response = render(request, "jobs/outputs.html", {"job": job, **outputs_context(job, request.user)})
    response["Cache-Control"] = "no-store"
    return response


def outputs_context(job: Job, user) -> dict:
    """What the job page offers once the job has ended, for `user` (who may see the job)."""
    from webapp.inference.services import job_page_context

    owner = job.owner_id == user.pk
    zoo = not is_hf(job.architecture)
    found = services.latest_checkpoint(job) if owner and zoo and job.is_final else None
    can_continue = (found is not None and job.status in (Job.Status.SUCCEEDED, Job.Status.CANCELLED)
                    and job.train_config.get("lr_schedule") != "onecycle")
    offer_checkpoint = found is not None and job.status in (Job.Status.CANCELLED, Job.Status.FAILED)
    return {"can_continue": can_continue, "continue_from": {"epochs": found[1]} if can_continue else None,
            "checkpoint": {"epochs": found[1], "size": found[0].stat().st_size} if offer_checkpoint else None,
            **job_page_context(job)}


def checkpoint_download(request, pk):
    """The last checkpoint of the user's own cancelled or failed job (weights, optimizer and
    random state), streamed; 404 for anyone else, staff included, and for other states."""
    job = get_job_for_user(request.user, pk)
    found = services.latest_checkpoint(job) if (
        job.owner_id == request.user.pk and not is_hf(job.architecture)
        and job.status in (Job.Status.CANCELLED, Job.Status.FAILED)) else None
    if found is None:
        raise Http404
    path, epochs = found
    audit.record(request.user, "checkpoint.download", job, file=path.name)
    response = FileResponse(open(path, "rb"), as_attachment=True, filename=f"{job.pk}-epoch{epochs}.pt",
                            content_type="application/octet-stream")
    response["X-Content-Type-Options"] = "nosniff"
    return response


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
def job_retry(request, pk):
    job = get_job_for_user(request.user, pk, write=True)
    try:
        services.retry_job(job, actor=request.user)
    except services.RetryError as exc:
        messages.error(request, " ".join(exc.errors.values()))
    else:
        messages.info(request, "Job queued again; it resumes from its last checkpoint.")
    return redirect("jobs:detail", pk=job.pk)


@require_POST
@throttled_page("submit")
def job_continue(request, pk):
    """The job page's "Continue training" form: more epochs (and optionally a new learning
    rate) from the job's last checkpoint, as a new job."""
    job = get_job_for_user(request.user, pk, write=True)
    epochs, lr, errors = _int_or_none(request.POST.get("epochs")), request.POST.get("learning_rate", "").strip(), []
    try:
        learning_rate = float(lr) if lr else None
    except ValueError:
        learning_rate, errors = None, ["learning rate: give a number such as 0.001, or leave it empty"]
    if not errors:
        try:
            new = services.continue_job(job, request.user, epochs if epochs is not None else 0, learning_rate)
        except services.SubmitError as exc:
            errors = list(exc.errors.values())
        else:
            messages.success(request, f"Queued “{new.name}”: it continues from {new.lineage['checkpoint']}.")
            return redirect("jobs:detail", pk=new.pk)
    messages.error(request, " ".join(errors))
    return redirect("jobs:detail", pk=job.pk)


def _int_or_none(value):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


@require_POST
def job_delete(request, pk):
    job = get_job_for_user(request.user, pk, write="delete")
    if services.delete_job(job, actor=request.user):
        messages.success(request, f"Job “{job.name}” deleted.")
        return redirect("jobs:list")
    messages.error(request, "Cancel the job before deleting it.")
    return redirect("jobs:detail", pk=job.pk)


MODEL_CARD = "MODEL_CARD.md"
MODEL_CARD_MAX_BYTES = 1_000_000


def model_card(request, pk):
    """The job's MODEL_CARD.md as a page (Markdown rendered with raw HTML escaped); the file
    itself stays a download at its artifact URL."""
    job = get_job_for_user(request.user, pk)
    artifact = job.artifacts.filter(name=MODEL_CARD).first()
    if artifact is None or not artifact.path.is_file() or lifecycle.file_sha256(artifact.path) != artifact.sha256:
        raise Http404
    from webapp.jobs import markdown

    with open(artifact.path, "rb") as f:
        text = f.read(MODEL_CARD_MAX_BYTES).decode("utf-8", errors="replace")
    return render(request, "jobs/model_card.html", {"job": job, "card_html": markdown.render(text)})


def artifact_download(request, pk, name):
    job = get_job_for_user(request.user, pk)
    return artifact_response(job, name, request.user)


def artifact_response(job, name: str, actor) -> FileResponse:
    artifact = job.artifacts.filter(name=name).first()
    if artifact is None or not artifact.path.is_file():
        raise Http404
    if lifecycle.file_sha256(artifact.path) != artifact.sha256:
        raise Http404("the stored file does not match its checksum")
    audit.record(actor, "artifact.download", job, file=name)
    response = FileResponse(open(artifact.path, "rb"), as_attachment=True, filename=artifact.name)
    response["X-Content-Type-Options"] = "nosniff"
    return response
