"""The sweep pages: list, create form (also from a job's page), the sweep page, cancel, promote."""

from __future__ import annotations

import json

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

import models_zoo
from models_zoo.hparams import TASK_METRICS
from models_zoo.schema import ConfigError
from webapp.jobs.access import datasets_for, get_job_for_user
from webapp.sweeps import services
from webapp.sweeps import space as spaces
from webapp.projects.access import creatable_projects, project_filter, resolve_for_create
from webapp.sweeps.access import get_sweep_for_user, sweeps_for
from webapp.sweeps.study import PRUNERS
from webapp.throttles import throttled_page


def sweep_list(request):
    sweeps = project_filter(sweeps_for(request.user), request.GET.get("project", ""))
    return render(request, "sweeps/list.html", {"sweeps": list(sweeps[:500])})


def _initial(request) -> dict:
    values = {"architecture": request.GET.get("architecture") or "mlp", "dataset": request.GET.get("dataset", ""),
              "model_config": {}, "train_config": {"epochs": 5}, "metric": "loss", "budget": 20, "concurrency": 2,
              "seed": 0, "pruner": "median", "name": ""}
    if request.GET.get("job"):
        job = get_job_for_user(request.user, request.GET["job"])
        values.update(architecture=job.architecture, dataset=str(job.dataset_id or ""), model_config=job.model_config,
                      train_config=job.train_config, name=f"sweep of {job.name}"[:200])
    try:
        values["space"] = spaces.propose(values["architecture"])
    except ConfigError:
        values["space"] = {}
    return values


def _json_field(post, name: str, errors: dict) -> dict:
    raw = post.get(name, "").strip() or "{}"
    try:
        value = json.loads(raw)
    except ValueError as exc:
        errors[name] = f"not valid JSON: {exc}"
        return {}
    if not isinstance(value, dict):
        errors[name] = "must be a JSON object"
        return {}
    return value


def _int_field(post, name: str, errors: dict, default: int) -> int:
    try:
        return int(post.get(name) or default)
    except ValueError:
        errors[name] = "must be a whole number"
        return default


def _context(request, values: dict, errors: dict) -> dict:
    architecture = values.get("architecture") or "mlp"
    try:
        fields = spaces.fields_for(architecture)
    except ConfigError:
        fields = {}
    shown = {k: (json.dumps(v, indent=2) if isinstance(v, (dict, list)) else v) for k, v in values.items()}
    return {"values": shown, "errors": errors, "datasets": list(datasets_for(request.user).filter(status="ready")),
            "architectures": [{"name": e.name, "label": e.label} for e in models_zoo.REGISTRY.values()],
            "fields": [{"key": k, **f} for k, f in fields.items()], "pruners": PRUNERS,
            "metrics": sorted({m for ms in TASK_METRICS.values() for m in ms}),
            "projects": creatable_projects(request.user)}


def sweep_new(request):
    if request.method != "POST":
        return render(request, "sweeps/new.html", _context(request, _initial(request), {}))
    return _create(request)


@throttled_page("submit")
def _create(request):
    post, errors = request.POST, {}
    values = {"name": post.get("name", ""), "architecture": post.get("architecture", ""),
              "dataset": post.get("dataset", ""), "metric": post.get("metric", "loss"),
              "pruner": post.get("pruner", "median"),
              "model_config": _json_field(post, "model_config", errors),
              "train_config": _json_field(post, "train_config", errors), "space": _json_field(post, "space", errors),
              "budget": _int_field(post, "budget", errors, 20), "concurrency": _int_field(post, "concurrency", errors, 2),
              "seed": _int_field(post, "seed", errors, 0), "project": post.get("project", "")}
    project, project_error = resolve_for_create(request.user, values["project"])
    if project_error:
        errors["project"] = project_error
    dataset = datasets_for(request.user).filter(pk=values["dataset"]).first() if values["dataset"] else None
    if not errors:
        try:
            sweep = services.create_sweep(
                request.user, dataset, values["architecture"], values["space"], values["metric"],
                budget=values["budget"], concurrency=values["concurrency"], model_config=values["model_config"],
                train_config=values["train_config"], seed=values["seed"], pruner=values["pruner"], name=values["name"],
                project=project)
        except services.SweepError as exc:
            errors.update(exc.errors)
        else:
            messages.success(request, f"Sweep started: {sweep.trials.count()} trial(s) submitted.")
            return redirect("sweeps:detail", pk=sweep.pk)
    values.update({k: post.get(k, "") for k in ("model_config", "train_config", "space")})
    return render(request, "sweeps/new.html", _context(request, values, errors), status=400)


def sweep_detail(request, pk):
    sweep = get_sweep_for_user(request.user, pk)
    data = services.sweep_rows(sweep)
    return render(request, "sweeps/detail.html", {"sweep": sweep, "data": data,
                                                  "trials": list(sweep.trials.select_related("job")),
                                                  "keys": list(sweep.space)})


@require_POST
def sweep_cancel(request, pk):
    sweep = get_sweep_for_user(request.user, pk, write=True)
    if sweep.is_final:
        messages.warning(request, f"The sweep is already {sweep.get_status_display().lower()}.")
    else:
        services.cancel_sweep(sweep, actor=request.user)
        messages.info(request, "Sweep cancelled; its running trials stop at their next step.")
    return redirect("sweeps:detail", pk=sweep.pk)


@require_POST
def sweep_promote(request, pk):
    """The best trial's job, opened in the job form's clone path to check and queue."""
    sweep = get_sweep_for_user(request.user, pk, write=True)
    best = sweep.best_trial()
    if best is None or best.job_id is None:
        messages.warning(request, "No trial has completed yet.")
        return redirect("sweeps:detail", pk=sweep.pk)
    return redirect(reverse("jobs:new") + f"?clone={best.job_id}")

