"""Access matrix: every URL pattern, for owner / other user / anonymous / staff.

The walk covers the whole URL conf: a new view that is not listed here fails the test, so
nobody adds an unchecked route by accident.
"""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.webapp.factories import api_token, finished_job, running_job

# route name -> (object kind, whether the route changes state)
OBJECT_ROUTES = {
    "datasets:detail": "dataset",
    "datasets:delete": "dataset",
    "datasets:edit": "dataset",
    "datasets:share": "dataset",
    "datasets:preview": "dataset",
    "datasets:first-job": "dataset",
    "datasets:dismiss-failure": "ingest_failure",
    "api:dataset-share": "dataset",
    "api:upload": "upload",
    "api:tus-upload": "upload",
    "jobs:detail": "job",
    "jobs:cancel": "job",
    "jobs:retry": "job",
    "api:job-retry": "job",
    "jobs:continue": "job",
    "api:job-continue": "job",
    "jobs:delete": "job",
    "jobs:tags": "job",
    "jobs:note": "job",
    "jobs:archive": "job",
    "jobs:repeat": "job",
    "api:job-repeat": "job",
    "jobs:compare-view": "compare_view",
    "jobs:compare-view-delete": "compare_view",
    "jobs:artifact": "job",
    "jobs:outputs": "job",
    "jobs:model-card": "job",
    "jobs:checkpoint": "job",
    "jobs:try": "job",
    "jobs:predict": "job",
    "jobs:prediction": "job",
    "jobs:onnx": "job",
    "jobs:batch": "job",
    "jobs:batch-status": "batch",
    "jobs:batch-download": "batch",
    "api:dataset": "dataset",
    "api:job": "job",
    "api:job-cancel": "job",
    "api:job-events": "job",
    "api:artifact": "job",
    "api:job-predictions": "job",
    "api:job-prediction": "job",
    "api:job-onnx": "job",
    "api:job-export-tensorboard": "job",
    "api:job-export-mlflow": "job",
    "api:job-export-mlflow-result": "job",
    "hub:delete": "model",
    "sweeps:detail": "sweep",
    "sweeps:cancel": "sweep",
    "sweeps:promote": "sweep",
    "api:sweep": "sweep",
    "api:sweep-cancel": "sweep",
    "api:sweep-promote": "sweep",
    "projects:detail": "project",
    "projects:edit": "project",
    "projects:delete": "project",
    "projects:member-add": "project",
    "projects:member": "project",
    "api:project": "project",
    "api:project-members": "project",
    "api:project-member": "project",
}
# Routes without an object id: must require login (pages redirect, API answers 401/403).
LIST_ROUTES = {
    "home", "accounts:profile", "accounts:token", "accounts:revoke_token", "password_change", "password_change_done", "accounts:notifications", "accounts:webhook_secret", "datasets:list", "datasets:detect-kind", "jobs:list", "jobs:new", "jobs:memory", "jobs:compare",
    "jobs:bulk", "jobs:compare-save", "api:jobs-bulk",
    "api:architectures", "api:datasets", "api:jobs", "api:uploads", "api:tus", "hub:list", "api:models",
    "sweeps:list", "sweeps:new", "api:sweeps", "api:train-defaults", "cluster:page", "cluster:state",
    "datasets:samples", "projects:list", "api:projects",
}
PUBLIC_ROUTES = {"login", "logout", "api:schema"}
# Operators only (a metrics token or a staff session): everyone else is refused, never redirected.
STAFF_ROUTES = {"metrics"}


def walk(patterns, prefix="", namespace=None):
    for p in patterns:
        if isinstance(p, URLResolver):
            if p.namespace == "admin":
                continue  # Django's admin has its own staff checks
            ns = p.namespace or namespace
            yield from walk(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            name = f"{namespace}:{p.name}" if namespace and p.name else p.name
            yield name, prefix + str(p.pattern)


def test_every_route_is_classified():
    names = {name for name, _ in walk(get_resolver().url_patterns)}
    unknown = names - set(OBJECT_ROUTES) - LIST_ROUTES - PUBLIC_ROUTES - STAFF_ROUTES
    assert not unknown, f"routes without an access rule in this test: {unknown}"


@pytest.mark.django_db
def test_staff_routes_refuse_everyone_else(alice):
    routes = {name: pat for name, pat in walk(get_resolver().url_patterns)}
    for route in STAFF_ROUTES:
        path = "/" + routes[route]
        assert _client(None).get(path).status_code == 401, route
        assert _client(alice).get(path).status_code == 403, route
        assert _client(alice, api=True).get(path).status_code in (401, 403), route


def _url(route: str, pattern: str, obj) -> str:
    if "<uuid:batch_id>" in pattern:  # a try-many file: its job's id, then its own
        pattern = pattern.replace("<uuid:pk>", str(obj.job_id)).replace("<uuid:batch_id>", str(obj.pk))
    path = "/" + pattern.replace("<uuid:pk>", str(obj.pk)).replace("<str:name>", "config.json").replace(
        "<uuid:prediction>", str(uuid.uuid4())).replace("<uuid:export>", str(uuid.uuid4())).replace(
        "<str:username>", "alice")
    return path


@pytest.fixture
def objects(alice):
    from webapp.datasets.models import IngestFailure
    from webapp.datasets.services import start_upload

    from webapp.hub.models import LocalModel

    job = finished_job(alice)
    model = LocalModel.objects.create(name="alices-model", task="text_classification", path="/nonexistent",
                                      owner=alice)
    failure = IngestFailure.objects.create(id=uuid.uuid4(), owner=alice, name="bad", kind="tabular",
                                           original_filename="bad.csv", error="bad.csv: line 3: 1 fields")
    from webapp.sweeps.models import Sweep, Trial

    sweep = Sweep.objects.create(owner=alice, name="alices-sweep", dataset=job.dataset, architecture="mlp",
                                 space={"train.learning_rate": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
                                 metric="loss", direction="minimize", budget=3, concurrency=1)
    Trial.objects.create(sweep=sweep, number=0, job=job, params={"train.learning_rate": 0.01}, state="complete",
                         value=0.5)
    from webapp.inference.models import BatchPrediction
    from webapp.jobs.models import CompareView
    from webapp.projects.services import create_project

    batch = BatchPrediction.objects.create(job=job, user=alice, filename="rows.csv", status="done")
    view = CompareView.objects.create(owner=alice, name="alices-view", job_ids=[str(job.pk)])
    return {"job": job, "dataset": job.dataset, "upload": start_upload(alice, "big.zip", 1000), "model": model,
            "ingest_failure": failure, "sweep": sweep, "compare_view": view, "batch": batch,
            "project": create_project(alice, "alices-project")}


def _client(user, api=False):
    c = Client()
    if user is None:
        return c
    if api:
        c.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
    else:
        c.force_login(user)
    return c


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_other_users_get_404_on_every_object_route(alice, bob, charlie, objects, method):
    routes = {name: pat for name, pat in walk(get_resolver().url_patterns)}
    for user in (bob, charlie):
        for api in (False, True):
            client = _client(user, api=api)
            for name, kind in OBJECT_ROUTES.items():
                if api and not name.startswith("api:"):
                    continue  # pages take session auth only; a token there is anonymous
                url = _url(name, routes[name], objects[kind])
                resp = getattr(client, method)(url)
                assert resp.status_code in (404, 405), (user.username, api, method, url, resp.status_code)
    # Nothing was changed by those attempts.
    objects["job"].refresh_from_db()
    objects["dataset"].refresh_from_db()
    assert objects["job"].status == "succeeded" and not objects["job"].cancel_requested
    assert objects["job"].archived_at is None and objects["job"].note == "" and not objects["job"].tags.exists()
    assert type(objects["compare_view"]).objects.filter(pk=objects["compare_view"].pk).exists()
    assert type(objects["model"]).objects.filter(pk=objects["model"].pk).exists()
    assert type(objects["ingest_failure"]).objects.filter(pk=objects["ingest_failure"].pk).exists()
    objects["sweep"].refresh_from_db()
    assert objects["sweep"].status == "running" and objects["job"].__class__.objects.count() == 1  # none promoted
    project = objects["project"]
    project.refresh_from_db()
    assert project.name == "alices-project" and list(project.memberships.values_list("user__username", "role")) == [
        ("alice", "maintainer")]


@pytest.mark.django_db
def test_anonymous_is_sent_to_login_or_refused(objects):
    routes = {name: pat for name, pat in walk(get_resolver().url_patterns)}
    client = Client()
    for name in list(OBJECT_ROUTES) + sorted(LIST_ROUTES):
        kind = OBJECT_ROUTES.get(name)
        url = _url(name, routes[name], objects[kind]) if kind else "/" + routes[name]
        resp = client.get(url)
        if name.startswith("api:"):
            assert resp.status_code in (401, 403), (url, resp.status_code)
        else:
            assert resp.status_code == 302 and "/accounts/login/" in resp["Location"], (url, resp.status_code)


@pytest.mark.django_db
def test_owner_and_staff_can_read_every_object_route(alice, staff, objects):
    routes = {name: pat for name, pat in walk(get_resolver().url_patterns)}
    read_routes = ["datasets:detail", "jobs:detail", "jobs:outputs", "jobs:artifact", "jobs:try", "jobs:onnx", "api:dataset", "api:job",
                   "api:job-events", "api:artifact", "api:upload", "api:job-export-tensorboard", "api:job-export-mlflow",
                   "sweeps:detail", "api:sweep", "projects:detail", "api:project", "api:project-members"]
    for user in (alice, staff):
        for name in read_routes:
            if name == "api:upload" and user is staff:
                continue  # an upload in progress is its owner's alone, staff included
            api = name.startswith("api:")
            url = _url(name, routes[name], objects[OBJECT_ROUTES[name]])
            resp = _client(user, api=api).get(url)
            assert resp.status_code == 200, (user.username, url, resp.status_code)


@pytest.mark.django_db
def test_lists_show_only_own_objects_but_staff_sees_all(alice, bob, staff):
    job = finished_job(alice)
    from webapp.sweeps.models import Sweep

    Sweep.objects.create(owner=alice, name="s", dataset=job.dataset, architecture="mlp", space={}, metric="loss",
                         direction="minimize", budget=1, concurrency=1, status="succeeded")
    for api_url, key in (("/api/jobs/", "jobs"), ("/api/datasets/", "datasets"), ("/api/sweeps/", "sweeps")):
        assert _client(bob, api=True).get(api_url).json()[key] == []
        assert len(_client(alice, api=True).get(api_url).json()[key]) == 1
        assert len(_client(staff, api=True).get(api_url).json()[key]) == 1
    assert job.name not in _client(bob).get("/jobs/").content.decode()
    assert job.name in _client(alice).get("/jobs/").content.decode()


@pytest.mark.django_db
def test_other_user_cannot_cancel_a_running_job(alice, bob):
    job = running_job(alice)
    assert _client(bob).post(f"/jobs/{job.pk}/cancel/").status_code == 404
    assert _client(bob, api=True).post(f"/api/jobs/{job.pk}/cancel/").status_code == 404
    job.refresh_from_db()
    assert not job.cancel_requested


@pytest.mark.django_db
def test_ids_are_uuids_and_malformed_ids_are_404(alice):
    job = finished_job(alice)
    assert len(str(job.pk)) == 36
    c = _client(alice, api=True)
    assert c.get("/api/jobs/123/").status_code == 404
    assert c.get("/api/jobs/00000000-0000-0000-0000-000000000000/").status_code == 404


@pytest.mark.django_db
def test_shared_dataset_is_read_only_for_the_other_user(alice, bob, charlie, sent_tasks):
    from webapp.datasets.models import Dataset
    from webapp.jobs.models import Job
    from tests.webapp.factories import ready_dataset

    ds = ready_dataset(alice)
    owner = _client(alice)
    assert owner.post(f"/datasets/{ds.pk}/share/", {"username": "bob"}).status_code == 302
    assert list(ds.shared_with.values_list("username", flat=True)) == ["bob"]
    b, b_api = _client(bob), _client(bob, api=True)
    assert b.get(f"/datasets/{ds.pk}/").status_code == 200
    assert b_api.get(f"/api/datasets/{ds.pk}/").status_code == 200
    assert [d["id"] for d in b_api.get("/api/datasets/").json()["datasets"]] == [str(ds.pk)]
    # bob may train on it ...
    r = b_api.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp"}, content_type="application/json")
    assert r.status_code == 201 and Job.objects.get().owner == bob
    # ... but not change, share or delete it
    assert b.post(f"/datasets/{ds.pk}/edit/", {"name": "mine now"}).status_code == 404
    assert b.post(f"/datasets/{ds.pk}/share/", {"username": "charlie"}).status_code == 404
    assert b.post(f"/datasets/{ds.pk}/delete/").status_code == 404
    assert b_api.patch(f"/api/datasets/{ds.pk}/", {"name": "x"}, content_type="application/json").status_code == 404
    assert b_api.delete(f"/api/datasets/{ds.pk}/").status_code == 404
    ds.refresh_from_db()
    assert ds.name == "iris-like" and Dataset.objects.filter(pk=ds.pk).exists()
    # alice does not see bob's job; charlie sees nothing
    assert _client(alice, api=True).get("/api/jobs/").json()["jobs"] == []
    assert _client(charlie).get(f"/datasets/{ds.pk}/").status_code == 404
    # unsharing takes it away again
    owner.post(f"/datasets/{ds.pk}/share/", {"username": "bob", "action": "remove"})
    assert b.get(f"/datasets/{ds.pk}/").status_code == 404
