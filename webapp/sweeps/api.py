"""JSON API of sweeps: the same services and access rule as the pages."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from webapp.api import errors as api_errors
from webapp.api import schema as docs
from webapp.api.views import Api
from webapp.jobs.access import datasets_for
from webapp.projects.access import resolve_for_create
from webapp.sweeps import services
from webapp.sweeps.access import get_sweep_for_user, sweeps_for
from webapp.sweeps.models import Sweep


class SweepCreate(serializers.Serializer):
    dataset = serializers.UUIDField()
    architecture = serializers.CharField(min_length=1, help_text="a name from /api/architectures/")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    model_config = serializers.DictField(required=False, help_text="the base architecture settings")
    train_config = serializers.DictField(required=False, help_text="the base training settings (epochs, ...)")
    space = serializers.DictField(help_text='the settings to search, e.g. {"train.learning_rate": {"type": "float", '
                                            '"low": 0.0001, "high": 0.1, "log": true}, "model.activation": '
                                            '{"type": "choice", "choices": ["relu", "gelu"]}}; ranges must lie '
                                            "inside each setting's limits (/api/architectures/)")
    metric = serializers.CharField(help_text="the validation metric to optimise: loss, accuracy, f1, r2, mae; "
                                             "loss and mae are minimised, the others maximised")
    budget = serializers.IntegerField(min_value=1, max_value=services.MAX_BUDGET, default=20)
    concurrency = serializers.IntegerField(min_value=1, max_value=services.MAX_CONCURRENCY, default=2,
                                           help_text="trials unfinished at once at most")
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0, help_text="the TPE sampler's seed")
    pruner = serializers.ChoiceField(choices=Sweep.Pruner.values, default="median")
    priority = serializers.IntegerField(required=False, default=0, help_text="the trials' priority, 0 or lower")
    project = serializers.UUIDField(required=False, allow_null=True, default=None,
                                    help_text="a project where you are a member or maintainer; its trials go there too")


class SweepList(Api):
    throttle_scope = "submit"  # on its POST

    @extend_schema(operation_id="sweeps_list", responses=docs.responses({200: docs.SweepListBody}),
                   description="The sweeps you may see (at most 500), newest first, without their trials.")
    def get(self, request):
        return Response({"sweeps": [s.to_dict(trials=False) for s in sweeps_for(request.user)[:500]]})

    @extend_schema(operation_id="sweeps_create", request=SweepCreate,
                   responses=docs.responses({201: docs.Sweep}, *docs.BODY),
                   description="Start a sweep: `budget` ordinary jobs whose searched settings Optuna's seeded TPE "
                               "sampler picks, at most `concurrency` unfinished at once, each submitted like any "
                               "job (your limits and quotas apply). Trials worse than the pruner's rule at an "
                               "epoch are cancelled and recorded as pruned. Each refused field is named in "
                               "`errors` (space keys as `space.<key>`).")
    def post(self, request):
        v = api_errors.validated(SweepCreate, request.data)
        project, project_error = resolve_for_create(request.user, v["project"])
        if project_error:
            return api_errors.error("invalid request", errors={"project": project_error})
        dataset = datasets_for(request.user).filter(pk=v["dataset"]).first()
        if dataset is None:
            return api_errors.error("invalid request", errors={"dataset": "no such dataset"})
        try:
            sweep = services.create_sweep(
                request.user, dataset, v["architecture"], v["space"], v["metric"], budget=v["budget"],
                concurrency=v["concurrency"], model_config=v.get("model_config"), train_config=v.get("train_config"),
                seed=v["seed"], pruner=v["pruner"], name=v.get("name", ""), priority=v["priority"], project=project)
        except services.SweepError as exc:
            return api_errors.error("invalid request", exc.status, errors=exc.errors)
        return Response(sweep.to_dict(), status=status.HTTP_201_CREATED)


class SweepDetail(Api):
    @extend_schema(operation_id="sweeps_retrieve", responses=docs.responses({200: docs.Sweep}, 404),
                   description="One sweep with its trials (parameters, state, value, job).")
    def get(self, request, pk):
        return Response(get_sweep_for_user(request.user, pk).to_dict())


class SweepCancel(Api):
    @extend_schema(operation_id="sweeps_cancel", request=None, responses=docs.responses({200: docs.Sweep}, 404),
                   description="Cancel the sweep: no new trial is submitted and its unfinished trials' jobs are "
                               "cancelled (a running one stops at its next step). A finished sweep is returned "
                               "unchanged.")
    def post(self, request, pk):
        sweep = services.cancel_sweep(get_sweep_for_user(request.user, pk, write=True), actor=request.user)
        return Response(sweep.to_dict())


class SweepPromote(Api):
    throttle_scope = "submit"

    @extend_schema(operation_id="sweeps_promote", request=None,
                   responses=docs.responses({201: docs.Job}, 404, 409),
                   description="Submit a new ordinary job with the settings of the sweep's best complete trial "
                               "(a clone of its job). 409 while no trial has completed; 429 at the active-job "
                               "limit.")
    def post(self, request, pk):
        sweep = get_sweep_for_user(request.user, pk, write=True)
        try:
            job = services.promote_best(sweep, request.user)
        except services.SweepError as exc:
            return api_errors.error(" ".join(exc.errors.values()), exc.status, errors=exc.errors)
        return Response(job.to_dict(), status=status.HTTP_201_CREATED)
