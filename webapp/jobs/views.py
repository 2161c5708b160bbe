from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Exists, OuterRef
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
from webapp.jobs import listing, lifecycle, scheduler, services
from webapp.jobs.access import datasets_for, get_job_for_user, jobs_for
from webapp.jobs.models import CompareView, Job, lower_is_better, queue_positions
from webapp.jobs.search import SearchError
from webapp.projects.access import creatable_projects, member_of, project_filter, resolve_for_create, visible_projects
from webapp.throttles import throttled_page


def job_list(request):
    """The jobs the user may see (staff: all), filtered, searched, sorted, a page at a time
    (webapp/jobs/listing.py); `?format=json` gives the same rows for the page's live refresh
    (same parameters, same access rule). A search that cannot be read answers 400 with why."""
    visible = jobs_for(request.user)
    keys = ("q", "status", "dataset", "architecture", "archived", "project", "sort", "page", "per_page")
    filters = {k: request.GET.get(k, "").strip()[:600] for k in keys}
    error, page = "", None
    try:
        page = listing.list_jobs(project_filter(visible, filters["project"]), filters, staff=request.user.is_staff)
    except SearchError as exc:
        error = str(exc)
    rows = job_rows(page.jobs) if page else []
    meta = _page_meta(page, filters) if page else {}
    if request.GET.get("format") == "json":
        if error:
            return JsonResponse({"error": error}, status=400)
        return JsonResponse({"jobs": rows, **meta})
    # The filters' choices without a scan of every job: the datasets the user may see that have a
    # visible job (an index probe per dataset), and the registry's architectures.
    datasets = [(str(d), n) for d, n in datasets_for(request.user).filter(
        Exists(visible.filter(dataset=OuterRef("pk")))).order_by("name").values_list("pk", "name")[:500]]
    architectures = sorted(models_zoo.REGISTRY)
    shown = {k: v for k, v in filters.items() if k not in ("sort", "page", "per_page")}
    projects = [(str(pk), n) for pk, n in visible_projects(request.user).values_list("pk", "name")[:200]]
    return render(request, "jobs/list.html", {
        "rows": rows, "filters": filters, "statuses": Job.Status.choices, "datasets": datasets,
        "architectures": architectures, "filtered": any(shown.values()), "page": meta, "search_error": error,
        "show_owner": request.user.is_staff or bool(projects), "projects": projects, "columns": _sort_links(filters),
        "bulk_actions": services.BULK_ACTIONS,
    }, status=400 if error else 200)


def _page_meta(page, filters: dict) -> dict:
    def link(n):
        return "?" + urlencode({**{k: v for k, v in filters.items() if v and k != "page"}, "page": n})

    return {"total": page.total, "page": page.page, "pages": page.pages, "per_page": page.per_page,
            "sort": page.sort, "capped": page.capped, "max_offset": listing.MAX_OFFSET,
            "previous": link(page.page - 1) if page.page > 1 else None,
            "next": link(page.page + 1) if page.page < page.pages else None}


def _sort_links(filters: dict) -> dict:
    """Each sortable column's link: ascending first (created: newest first), again to reverse."""
    current = filters.get("sort") or listing.DEFAULT_SORT
    out = {}
    for col in listing.COLUMNS:
        first = f"-{col}" if col in ("created", "started", "finished") else col
        flipped = col if current == f"-{col}" else f"-{col}"
        target = flipped if current.lstrip("-") == col else first
        state = ("descending" if current.startswith("-") else "ascending") if current.lstrip("-") == col else "none"
        params = {k: v for k, v in filters.items() if v and k not in ("sort", "page")}
        out[col] = {"url": "?" + urlencode({**params, "sort": target}), "state": state}
    return out


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
    now = timezone.now()
    rows = []
    for j in jobs:
        monitor, mode = monitored(j)
        best = None
        if j.status == Job.Status.RUNNING:  # the best epoch so far (events.append_events keeps it)
            best = ((j.summary or {}).get("best") or {}).get(monitor)
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
            "project": str(j.project_id) if j.project_id else None,
            "project_name": j.project.name if j.project_id else "",
            "owner": j.owner.get_username(), "created_at": j.created_at.isoformat(),
            "tags": j.tag_names, "archived": j.archived_at is not None,
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
    # The Devices and Machines fields say what they would get, from the workers online now.
    offers = {"gpus": scheduler.devices_offer, "nodes": scheduler.nodes_offer}
    train_fields = [dict(f, help=f"{f['help']}; {offers[f['name']]()}") if f["name"] in offers else f
                    for f in describe(TrainConfig)]
    return {"datasets": datasets, "architectures": architectures, "train_fields": train_fields,
            "values": values, "errors": errors, "train_defaults": train_defaults,
            "cuda_context": {True: "true", False: "false"}.get(scheduler.cuda_available(), ""),
            "fine_tune_rule": DEFAULTS_RULE, "adaptive_rule": ADAPTIVE_RULE, "fresh_form": not values.get("architecture"),
            "projects": creatable_projects(request.user)}


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
    project, project_error = resolve_for_create(request.user, post.get("project"))
    if project_error:
        return render(request, "jobs/new.html", _form_context(request, dict(post.items()), {"project": project_error}),
                      status=400)
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
                                  min_gpu_memory_gb=_min_gpu(post.get("min_gpu_memory_gb", "")), project=project)
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
    values = {"name": f"{job.name} (copy)", "dataset": str(job.dataset_id or ""), "architecture": job.architecture,
              "project": str(job.project_id or "")}
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


# The compare page draws every job it is given up to this many (each one's history is fetched
# and drawn; past this the legend and the colours stop being readable).
COMPARE_MAX = 50


def job_compare(request):
    """Jobs side by side: validation curves (one colour each, or grouped by a setting with mean
    ± std bands), settings (the differing ones in bold), a metrics table with each row's best."""
    ids = [i for i in request.GET.getlist("ids") + request.GET.get("id", "").split(",") if i]
    return _compare_page(request, list(dict.fromkeys(ids)), request.GET.get("group", ""), strict=True)


def _compare_jobs(request, ids: list[str], strict: bool) -> tuple[list[Job], str]:
    """The jobs to compare (at most COMPARE_MAX) and what the page says about the ones left out."""
    note = ""
    if len(ids) > COMPARE_MAX:
        note = f"Showing the first {COMPARE_MAX} of the {len(ids)} jobs selected: the page compares at most {COMPARE_MAX}."
        ids = ids[:COMPARE_MAX]
    if strict:  # ids in the address: someone else's is a 404, as on every job route
        return [get_job_for_user(request.user, pk) for pk in ids], note
    # A saved view outlives its jobs: the ones deleted (or no longer shared) are left out.
    found = {str(j.pk): j for j in jobs_for(request.user).filter(pk__in=[i for i in ids if _is_uuid(i)])}
    jobs = [found[i] for i in ids if i in found]
    if missing := len(ids) - len(jobs):
        note = (note + " " if note else "") + f"{missing} job{'' if missing == 1 else 's'} of this view no longer exist."
    return jobs, note


def _setting_rows(jobs: list[Job]) -> list[dict]:
    """Architecture, dataset and every setting, one value per job; `differs` when they are not all equal."""
    # The settings that applied to each job (services.shown_settings): "" where one did not.
    shown = [services.shown_settings(j) for j in jobs]
    values = [{**{f"model.{k}": v for k, v in m.items()}, **t} for m, t in shown]
    params = sorted({k for v in values for k in v})
    rows = [{"name": "architecture", "values": [j.architecture for j in jobs]},
            {"name": "dataset", "values": [j.dataset.name if j.dataset_id and j.dataset else "(deleted)" for j in jobs]}]
    rows += [{"name": p, "values": [v.get(p, "") for v in values]} for p in params]
    for row in rows:
        row["differs"] = len({repr(v) for v in row["values"]}) > 1
    return rows


def _compare_page(request, ids: list[str], group: str, strict: bool, view: CompareView | None = None):
    jobs, note = _compare_jobs(request, ids, strict)
    rows = _setting_rows(jobs)
    groups = [r["name"] for r in rows if r["differs"] and r["name"] != "seed"]
    if group and group not in [r["name"] for r in rows]:
        group = ""
    group_values = next((r["values"] for r in rows if r["name"] == group), None)
    return render(request, "jobs/compare.html", {
        "jobs": jobs, "rows": rows, "metrics": _metric_rows(jobs), "note": note, "group": group, "groups": groups,
        "view": view, "views": CompareView.objects.filter(owner=request.user)[:100],
        "ids": [str(j.pk) for j in jobs], "max": COMPARE_MAX,
        "compare_json": {"group": group, "jobs": [
            {"id": str(j.pk), "name": j.name, "seed": (j.train_config or {}).get("seed"),
             "group": _group_label(group_values[i]) if group_values else None} for i, j in enumerate(jobs)]},
    })


def _group_label(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def _metric_rows(jobs: list[Job]) -> list[dict]:
    """The metrics table: the final model's validation metrics, the best epoch's, the test
    split's; each row's best value marked (lowest for a loss-like metric, else highest)."""
    sources = [("final", lambda j: j.metrics or {}), ("best", lambda j: (j.summary or {}).get("best") or {}),
               ("test", lambda j: j.test_metrics or {})]
    out = []
    for label, get in sources:
        names = sorted({k for j in jobs for k, v in get(j).items() if _is_number(v)})
        for name in names:
            values = [get(j).get(name) for j in jobs]
            numbers = [v for v in values if _is_number(v)]
            best = (min(numbers) if lower_is_better(name) else max(numbers)) if len(numbers) > 1 else None
            out.append({"name": f"{label} {name}", "better": "lower" if lower_is_better(name) else "higher",
                        "cells": [{"value": v if _is_number(v) else None, "best": best is not None and v == best}
                                  for v in values]})
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@require_POST
def compare_save(request):
    """Save the compare page's jobs and grouping under a name (the same name again replaces it)."""
    name = request.POST.get("name", "").strip()[:100]
    ids = [i for i in request.POST.getlist("ids") if _is_uuid(i)]
    visible = set(str(pk) for pk in jobs_for(request.user).filter(pk__in=ids).values_list("pk", flat=True))
    ids = [i for i in dict.fromkeys(ids) if i in visible][:COMPARE_MAX]
    if not name or not ids:
        messages.error(request, "Give the view a name; it needs at least one job you can see.")
        return redirect(reverse("jobs:compare") + "?" + urlencode([("ids", i) for i in ids]))
    view, _ = CompareView.objects.update_or_create(owner=request.user, name=name, defaults={
        "job_ids": ids, "group_by": request.POST.get("group", "").strip()[:100]})
    messages.success(request, f"Saved the compare view “{view.name}”.")
    return redirect("jobs:compare-view", pk=view.pk)


def compare_view(request, pk):
    """A saved compare view, re-opened (its owner's only: anyone else gets 404)."""
    view = CompareView.objects.filter(owner=request.user, pk=pk).first() if request.user.is_authenticated else None
    if view is None:
        raise Http404
    return _compare_page(request, [str(i) for i in view.job_ids], request.GET.get("group", view.group_by),
                         strict=False, view=view)


@require_POST
def compare_view_delete(request, pk):
    deleted, _ = CompareView.objects.filter(owner=request.user, pk=pk).delete()
    if not deleted:
        raise Http404
    messages.info(request, "Compare view deleted.")
    return redirect("jobs:compare")


def job_detail(request, pk):
    job = get_job_for_user(request.user, pk)
    monitor, mode = monitored(job)
    from webapp.exports.services import file_root

    from webapp.jobs import markdown
    from webapp.jobs.access import may_write

    model_settings, train_settings = services.shown_settings(job)
    return render(request, "jobs/detail.html", {"job": job, "job_json": job.to_dict(), "monitor": monitor,
                                                "model_settings": model_settings, "train_settings": train_settings,
                                                "note_html": markdown.render(job.note) if job.note else "",
                                                "can_write": may_write(request.user, job),
                                                "max_repeats": services.MAX_REPEATS,
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
    found = services.latest_checkpoint(job) if (owner or member_of(user, job)) and zoo and job.is_final else None
    can_continue = (owner and found is not None and job.status in (Job.Status.SUCCEEDED, Job.Status.CANCELLED)
                    and job.train_config.get("lr_schedule") != "onecycle")
    offer_checkpoint = found is not None and job.status in (Job.Status.CANCELLED, Job.Status.FAILED)
    return {"can_continue": can_continue, "continue_from": {"epochs": found[1]} if can_continue else None,
            "checkpoint": {"epochs": found[1], "size": found[0].stat().st_size} if offer_checkpoint else None,
            **job_page_context(job)}


def checkpoint_download(request, pk):
    """The last checkpoint of a cancelled or failed job (weights, optimizer and random state),
    streamed, for its owner and the members of its project (any role: viewers download); 404
    for anyone else, staff included, and for other states."""
    job = get_job_for_user(request.user, pk)
    found = services.latest_checkpoint(job) if (
        (job.owner_id == request.user.pk or member_of(request.user, job)) and not is_hf(job.architecture)
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


@require_POST
def job_tags(request, pk):
    """The job page's tags field: the job's tags become the ones given (comma or space separated)."""
    job = get_job_for_user(request.user, pk, write=True)
    try:
        services.set_tags(job, request.POST.get("tags", ""))
    except services.OrganiseError as exc:
        messages.error(request, " ".join(exc.errors.values()))
    return redirect("jobs:detail", pk=job.pk)


@require_POST
def job_note(request, pk):
    job = get_job_for_user(request.user, pk, write=True)
    try:
        services.set_note(job, request.POST.get("note", ""))
    except services.OrganiseError as exc:
        messages.error(request, " ".join(exc.errors.values()))
    else:
        messages.success(request, "Note saved.")
    return redirect("jobs:detail", pk=job.pk)


@require_POST
def job_archive(request, pk):
    """Archive (archived=1) or unarchive (archived=0) the job; nothing of it is deleted."""
    job = get_job_for_user(request.user, pk, write=True)
    archived = request.POST.get("archived", "1") != "0"
    services.archive_job(job, archived, actor=request.user)
    messages.info(request, "Job archived: it is hidden from the jobs list (filter: Archived) and keeps "
                           "all its data." if archived else "Job unarchived.")
    return redirect("jobs:detail", pk=job.pk)


@require_POST
@throttled_page("submit")
def job_repeat(request, pk):
    """"Repeat with N seeds": N copies of a finished job with seeds seed+1 … seed+N, then the
    compare page of all of them grouped by nothing but the seed."""
    job = get_job_for_user(request.user, pk, write=True)
    n = _int_or_none(request.POST.get("n"))
    try:
        new = services.repeat_with_seeds(job, request.user, n if n is not None else 0)
    except services.SubmitError as exc:
        messages.error(request, " ".join(exc.errors.values()))
        return redirect("jobs:detail", pk=job.pk)
    messages.success(request, f"Queued {len(new)} repeat{'' if len(new) == 1 else 's'} of “{job.name}” with new seeds.")
    return redirect(reverse("jobs:compare") + "?" + urlencode([("ids", str(j.pk)) for j in [job, *new]]))


@require_POST
def jobs_bulk(request):
    """The jobs list's bulk actions on the ticked jobs: each job by the one-job rule; the jobs
    the user may not change are skipped and listed in the message."""
    try:
        result = services.bulk_action(request.user, request.POST.get("action", ""), request.POST.getlist("ids"),
                                      tags=request.POST.get("tags", ""))
    except services.OrganiseError as exc:
        messages.error(request, " ".join(exc.errors.values()))
    else:
        (messages.warning if result.skipped else messages.success)(request, result.message())
    back = request.POST.get("next", "")
    return redirect(back if back.startswith("/jobs/") and "//" not in back else "jobs:list")


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
