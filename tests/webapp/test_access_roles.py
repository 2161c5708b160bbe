"""The project role matrix: every route of the URL conf, for every role.

Roles: the item's owner (a member of the project), a viewer, a member and a maintainer of the
project, an outsider, plain staff (no permissions) and a superuser. Every object route is
classified below with the level it needs; the walk fails on a route that is not (as
test_access.py does), and each (route, role) runs on fresh rows inside a savepoint that is
rolled back, so deleting routes cannot hide the ones after them.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.urls import get_resolver

from tests.webapp.factories import api_token, finished_job, ready_dataset
from tests.webapp.test_access import LIST_ROUTES, OBJECT_ROUTES, walk

ROLES = ("owner", "viewer", "member", "maintainer", "outsider", "staff", "superuser")

# Who may, per level (the rule of webapp/projects/access.py):
ALLOWED = {
    "read": {"owner", "viewer", "member", "maintainer", "staff", "superuser"},
    "change": {"owner", "maintainer", "superuser"},
    "owner": {"owner"},  # one user's own things: uploads, ingest notices, their tries and exports
    "owner_verb": {"owner"},  # continue training: the owner's quota and checkpoint
    "team": {"owner", "viewer", "member", "maintainer"},  # a cancelled job's checkpoint: not staff
    "manage": {"maintainer", "superuser"},  # the project itself and its members
    "manage_or_self": {"owner", "maintainer", "superuser"},  # removing alice: she may leave
}
# Who sees the object (refused with 403) though the level refuses them (else 404).
SEES = {
    "read": ALLOWED["read"], "change": ALLOWED["read"], "owner": {"owner"}, "owner_verb": ALLOWED["read"],
    "team": ALLOWED["team"], "manage": ALLOWED["team"] | {"staff", "superuser"},
    "manage_or_self": ALLOWED["team"] | {"staff", "superuser"},
}

# (route, method, level, object kind, body); every route of OBJECT_ROUTES appears at least once.
CASES = [
    ("datasets:detail", "get", "read", "dataset", None),
    ("datasets:preview", "get", "read", "dataset", None),
    ("datasets:edit", "post", "change", "dataset", {"name": "renamed"}),
    ("datasets:share", "post", "change", "dataset", {"username": "charlie"}),
    ("datasets:delete", "post", "change", "dataset", None),
    ("datasets:dismiss-failure", "post", "owner", "ingest_failure", None),
    ("datasets:first-job", "post", "read", "dataset", None),  # a guided job of one's own, on samples
    ("api:dataset", "get", "read", "dataset", None),
    ("api:dataset", "patch", "change", "dataset", {"name": "renamed"}),
    ("api:dataset", "delete", "change", "dataset", None),
    ("api:dataset-share", "post", "change", "dataset", {"username": "charlie"}),
    ("api:upload", "get", "owner", "upload", None),
    ("api:tus-upload", "head", "owner", "upload", None),
    ("jobs:detail", "get", "read", "job", None),
    ("jobs:outputs", "get", "read", "job", None),
    ("jobs:artifact", "get", "read", "job", None),
    ("jobs:model-card", "get", "read", "job", None),
    ("jobs:try", "get", "read", "job", None),
    ("jobs:predict", "post", "read", "job", {"features": "1,2"}),
    ("jobs:prediction", "get", "owner", "prediction", None),
    ("jobs:batch", "post", "read", "job", {}),  # try many: anyone who may try the model (no file: its message)
    ("jobs:batch-status", "get", "owner", "batch", None),  # one user's file of inputs and its answers
    ("jobs:batch-download", "get", "owner", "batch", None),
    ("jobs:onnx", "get", "read", "job", None),
    ("jobs:onnx", "post", "change", "job", None),
    ("jobs:checkpoint", "get", "team", "cancelled_job", None),
    ("jobs:cancel", "post", "change", "running_job", None),
    ("jobs:retry", "post", "change", "cancelled_job", None),
    ("jobs:continue", "post", "owner_verb", "cancelled_job", {"epochs": "1"}),
    ("jobs:delete", "post", "change", "job", None),
    ("jobs:tags", "post", "change", "job", {"tags": "mine"}),
    ("jobs:note", "post", "change", "job", {"note": "a note"}),
    ("jobs:archive", "post", "change", "job", None),
    ("jobs:repeat", "post", "owner_verb", "job", {"n": "1"}),
    ("api:job-repeat", "post", "owner_verb", "job", {"n": 1}),
    ("jobs:compare-view", "get", "owner", "compare_view", None),
    ("jobs:compare-view-delete", "post", "owner", "compare_view", None),
    ("api:job", "get", "read", "job", None),
    ("api:job", "delete", "change", "job", None),
    ("api:job-cancel", "post", "change", "running_job", None),
    ("api:job-retry", "post", "change", "cancelled_job", None),
    ("api:job-continue", "post", "owner_verb", "cancelled_job", {"epochs": 1}),
    ("api:job-events", "get", "read", "job", None),
    ("api:artifact", "get", "read", "job", None),
    ("api:job-predictions", "post", "read", "job", {"features": [1, 2]}),
    ("api:job-prediction", "get", "owner", "prediction", None),
    ("api:job-onnx", "get", "read", "job", None),
    ("api:job-onnx", "post", "change", "job", None),
    ("api:job-export-tensorboard", "get", "read", "job", None),
    ("api:job-export-mlflow", "get", "read", "job", None),
    ("api:job-export-mlflow-result", "get", "owner", "mlflow_export", None),
    ("hub:delete", "post", "change", "model", None),
    ("sweeps:detail", "get", "read", "sweep", None),
    ("sweeps:cancel", "post", "change", "sweep", None),
    ("sweeps:promote", "post", "change", "sweep", None),
    ("api:sweep", "get", "read", "sweep", None),
    ("api:sweep-cancel", "post", "change", "sweep", None),
    ("api:sweep-promote", "post", "change", "sweep", None),
    ("projects:detail", "get", "read", "project", None),
    ("projects:edit", "post", "manage", "project", {"name": "renamed"}),
    ("projects:delete", "post", "manage", "project", None),
    ("projects:member-add", "post", "manage", "project", {"username": "charlie", "role": "viewer"}),
    ("projects:member", "post", "manage", "project", {"role": "viewer"}),
    ("api:project", "get", "read", "project", None),
    ("api:project", "patch", "manage", "project", {"name": "renamed"}),
    ("api:project", "delete", "manage", "project", None),
    ("api:project-members", "get", "read", "project", None),
    ("api:project-members", "post", "manage", "project", {"username": "charlie", "role": "viewer"}),
    ("api:project-member", "patch", "manage", "project", {"role": "viewer"}),
    ("api:project-member", "delete", "manage_or_self", "project", None),
]


def test_every_object_route_has_a_role_rule():
    routes = {name for name, _ in walk(get_resolver().url_patterns)}
    assert set(OBJECT_ROUTES) <= routes
    assert {c[0] for c in CASES} == set(OBJECT_ROUTES), set(OBJECT_ROUTES) ^ {c[0] for c in CASES}


@pytest.fixture
def people(db):
    make = User.objects.create_user
    return {"owner": make("alice", password="x"), "viewer": make("vic", password="x"),
            "member": make("mia", password="x"), "maintainer": make("max", password="x"),
            "outsider": make("charlie", password="x"), "staff": make("sam", password="x", is_staff=True),
            "superuser": make("root", password="x", is_staff=True, is_superuser=True)}


def build(people) -> dict:
    """The owner's items, all in one project; the others' roles in it."""
    from webapp.datasets.models import IngestFailure
    from webapp.datasets.services import start_upload
    from webapp.exports.models import MlflowExport
    from webapp.hub.models import LocalModel
    from webapp.inference.models import Prediction
    from webapp.jobs.lifecycle import file_sha256
    from webapp.jobs.models import Artifact, Job
    from webapp.projects.services import add_member, create_project
    from webapp.sweeps.models import Sweep, Trial

    alice = people["owner"]
    project = create_project(people["maintainer"], f"team-{uuid.uuid4().hex[:8]}")
    for role, who in (("member", "owner"), ("viewer", "viewer"), ("member", "member")):
        add_member(people["maintainer"], project, people[who].username, role)
    dataset = ready_dataset(alice)
    dataset.info["previews"] = {"a": ["p0.png"]}  # a preview thumbnail, for the preview route
    dataset.save()
    (dataset.directory / "previews").mkdir()
    (dataset.directory / "previews" / "p0.png").write_bytes(b"\x89PNG\r\n")
    job = finished_job(alice, dataset)
    job.name = "alices-job"
    job.save()
    card = job.directory / "artifacts" / "MODEL_CARD.md"
    card.write_text("# a card\n")
    Artifact.objects.create(job=job, name="MODEL_CARD.md", size_bytes=card.stat().st_size, sha256=file_sha256(card))
    cancelled = Job.objects.create(owner=alice, dataset=dataset, name="stopped", architecture="mlp",
                                   train_config={"epochs": 3}, status=Job.Status.CANCELLED)
    (cancelled.directory / "checkpoints").mkdir(parents=True)
    (cancelled.directory / "checkpoints" / "ckpt-000001.pt").write_bytes(b"\0" * 64)
    running = Job.objects.create(owner=alice, dataset=dataset, name="running", architecture="mlp",
                                 status=Job.Status.RUNNING, train_config={"epochs": 5})
    sweep = Sweep.objects.create(owner=alice, name="alices-sweep", dataset=dataset, architecture="mlp",
                                 space={"train.learning_rate": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
                                 metric="loss", direction="minimize", budget=3, concurrency=1)
    Trial.objects.create(sweep=sweep, number=0, job=job, params={"train.learning_rate": 0.01}, state="complete", value=0.5)
    model = LocalModel.objects.create(name="alices-model", task="text_classification", path="/nonexistent", owner=alice)
    for obj in (dataset, job, cancelled, running, sweep, model):
        type(obj).objects.filter(pk=obj.pk).update(project=project)
    failure = IngestFailure.objects.create(id=uuid.uuid4(), owner=alice, name="bad", kind="tabular",
                                           original_filename="bad.csv", error="bad.csv: line 3: 1 fields")
    prediction = Prediction.objects.create(job=job, user=alice, inputs={})
    export = MlflowExport.objects.create(job=job, user=alice, tracking_uri="file:///tmp/x", experiment="e")
    from webapp.jobs.models import CompareView

    view = CompareView.objects.create(owner=alice, name="alices-view", job_ids=[str(job.pk)])
    from webapp.inference.models import BatchPrediction

    batch = BatchPrediction.objects.create(job=job, user=alice, filename="rows.csv", status="done")
    batch.output_path.parent.mkdir(parents=True, exist_ok=True)
    batch.output_path.write_text("line,prediction\n1,a\n")
    return {"batch": batch, "project": project, "dataset": dataset, "job": job, "cancelled_job": cancelled, "running_job": running,
            "sweep": sweep, "model": model, "ingest_failure": failure, "upload": start_upload(alice, "big.zip", 1000),
            "prediction": prediction, "mlflow_export": export, "compare_view": view}


def _url(pattern: str, kind: str, objs: dict) -> str:
    obj = objs[kind]
    pk = {"prediction": objs["job"].pk, "mlflow_export": objs["job"].pk, "batch": objs["job"].pk}.get(kind, obj.pk)
    pattern = pattern.replace("<uuid:batch_id>", str(objs["batch"].pk))
    path = "/" + pattern.replace("<uuid:pk>", str(pk)).replace(
        "<str:name>", "p0.png" if kind == "dataset" else "config.json").replace(
        "<uuid:prediction>", str(objs["prediction"].pk)).replace("<uuid:export>", str(objs["mlflow_export"].pk)).replace(
        "<str:username>", "alice")
    if kind == "prediction" and "?" not in path and "try/result" in path:
        path += f"?id={objs['prediction'].pk}"
    return path


def _client(user, api: bool) -> Client:
    c = Client()
    if api:
        c.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
    else:
        c.force_login(user)
    return c


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_every_object_route_follows_the_role(role, people, sent_tasks, settings):
    from webapp.jobs.models import Job

    settings.TRAINYARD_MLFLOW_FILE_ROOT = "/tmp"
    routes = dict(walk(get_resolver().url_patterns))
    user = people[role]
    failures = []
    for name, method, level, kind, body in CASES:
        api = name.startswith("api:")
        with transaction.atomic():
            objs = build(people)
            jobs_before = set(Job.objects.values_list("pk", flat=True))
            url = _url(routes[name], kind, objs)
            client = _client(user, api)
            kwargs = {"content_type": "application/json"} if api and body is not None else {}
            resp = getattr(client, method)(url, body if body is not None else ({} if method == "post" else None),
                                           **kwargs) if method in ("post", "patch") else getattr(client, method)(url)
            code = resp.status_code
            new_jobs = Job.objects.exclude(pk__in=jobs_before)
            if role in ALLOWED[level]:
                ok = code < 500 and code not in (403, 404, 405)
            elif role in SEES[level]:
                # A page verb that the service refuses after the access check (continue training
                # by a maintainer) answers with its message and a redirect; nothing is created.
                ok = code == 403 or (level == "owner_verb" and not api and code == 302)
            else:
                ok = code == 404
            if level == "owner_verb" and role not in ALLOWED[level]:
                ok = ok and not new_jobs.exists()
            if not ok:
                failures.append((name, method, level, code))
            transaction.set_rollback(True)
    assert not failures, f"{role}: {failures}"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_lists_show_the_project_items_to_its_members_and_staff(role, people):
    objs = build(people)
    user = people[role]
    sees = role in ALLOWED["read"]
    api = _client(user, api=True)
    for url, key, obj in (("/api/jobs/", "jobs", objs["job"]), ("/api/datasets/", "datasets", objs["dataset"]),
                          ("/api/sweeps/", "sweeps", objs["sweep"]), ("/api/models/", "models", objs["model"]),
                          ("/api/projects/", "projects", objs["project"])):
        ids = [row["id"] for row in api.get(url).json()[key]]
        assert (str(obj.pk) in ids) is sees, (role, url)
    page = _client(user, api=False)
    for url, text in (("/jobs/", objs["job"].name), ("/jobs/?format=json", str(objs["job"].pk)),
                      ("/datasets/", objs["dataset"].name), ("/sweeps/", objs["sweep"].name),
                      ("/models/", objs["model"].name), ("/projects/", objs["project"].name)):
        assert (text in page.get(url).content.decode()) is sees, (role, url)
    # Every list route answers every role (none errs, none leaks): checked by the walk.
    routes = dict(walk(get_resolver().url_patterns))
    for name in sorted(LIST_ROUTES):
        client = _client(user, api=name.startswith("api:"))
        assert client.get("/" + routes[name]).status_code < 500, name


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_only_members_and_maintainers_may_add_to_a_project(role, people, sent_tasks):
    from webapp.jobs.models import Job

    objs = build(people)
    user = people[role]
    creates = role in {"owner", "member", "maintainer"}
    page = _client(user, api=False).get("/jobs/new/").content.decode()
    assert (f'value="{objs["project"].pk}"' in page) is creates, role  # the form's project selector
    r = _client(user, api=True).post("/api/jobs/", {"dataset": str(objs["dataset"].pk), "architecture": "mlp",
                                                    "project": str(objs["project"].pk)}, content_type="application/json")
    if creates:
        assert r.status_code == 201, r.json()
        assert Job.objects.get(pk=r.json()["id"]).project_id == objs["project"].pk
    else:
        assert r.status_code == 400 and "project" in r.json()["errors"], (role, r.status_code, r.json())
        assert not Job.objects.filter(owner=user).exists()
