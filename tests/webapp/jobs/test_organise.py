"""Run organisation on the web tier: search in the database, sort and pages, tags, notes,
archive, bulk actions (owner rules), repeat with seeds, the compare page and its saved views."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.webapp.factories import api_token, finished_job, ready_dataset, running_job
from webapp.jobs import services
from webapp.jobs.events import append_events
from webapp.jobs.models import CompareView, Job, JobEvent, JobTag

pytestmark = pytest.mark.django_db


def _client(user, api=False):
    c = Client()
    if api:
        c.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
    else:
        c.force_login(user)
    return c


def job(owner, name, ds=None, status=Job.Status.SUCCEEDED, train=None, metrics=None, tags=(), model=None, **kw):
    j = Job.objects.create(owner=owner, dataset=ds or ready_dataset(owner, name=f"ds-{name}"), name=name,
                           architecture="mlp", status=status, model_config=model or {"hidden_sizes": [8]},
                           train_config={"epochs": 2, "seed": 0, "optimizer": "adamw", **(train or {})},
                           metrics=metrics or {}, **kw)
    for t in tags:
        JobTag.objects.create(job=j, name=t)
    return j


def names(client, **params):
    r = client.get("/jobs/", {"format": "json", **params})
    assert r.status_code == 200, r.content
    return [row["name"] for row in r.json()["jobs"]]


@pytest.fixture
def runs(alice, bob):
    ds = ready_dataset(alice, "digits")
    out = {
        "slow": job(alice, "slow", ds, train={"learning_rate": 0.001}, metrics={"accuracy": 0.95, "loss": 0.2},
                    tags=["baseline"], test_metrics={"accuracy": 0.93}),
        "fast": job(alice, "fast", ds, train={"learning_rate": 0.1, "optimizer": "sgd"},
                    metrics={"accuracy": 0.7, "loss": 0.9}),
        "mid": job(alice, "mid wide", ds, train={"learning_rate": 0.005, "mixed_precision": True},
                   metrics={"accuracy": 0.85, "loss": 0.4}, tags=["lr-sweep"], model={"hidden_sizes": [64], "dropout": 0.1}),
        "live": job(alice, "live", ds, status=Job.Status.RUNNING, train={"learning_rate": 0.002}),
        "bobs": job(bob, "bobs", train={"learning_rate": 0.001}, metrics={"accuracy": 0.99}),
    }
    # The running job has no final metrics yet: its validation events make its summary.
    append_events(out["live"].pk, [("metric", {"split": "val", "step": 1, "values": {"accuracy": 0.6, "loss": 1.0}}),
                                   ("metric", {"split": "val", "step": 2, "values": {"accuracy": 0.92, "loss": 0.3}})])
    append_events(out["live"].pk, [("metric", {"split": "val", "step": 3, "values": {"accuracy": 0.91, "loss": 0.35}})])
    return out


def test_the_summary_keeps_the_latest_and_best_validation_values(runs):
    live = Job.objects.get(pk=runs["live"].pk)
    assert live.summary == {"last": {"accuracy": 0.91, "loss": 0.35}, "best": {"accuracy": 0.92, "loss": 0.3}}
    # Train metrics and non-numbers leave it alone.
    append_events(live.pk, [("metric", {"split": "train", "step": 4, "values": {"loss": 0.01}}),
                            ("metric", {"split": "val", "step": 4, "values": {"note": "x", "ok": True}})])
    live.refresh_from_db()
    assert live.summary["best"] == {"accuracy": 0.92, "loss": 0.3}


def test_search_over_settings_and_metrics_runs_in_the_database(client_alice, runs):
    assert sorted(names(client_alice, q="learning_rate<0.01")) == ["live", "mid wide", "slow"]
    assert sorted(names(client_alice, q="learning_rate<0.01 accuracy>0.9")) == ["live", "slow"]  # live: latest epoch
    assert names(client_alice, q="learning_rate<=0.001") == ["slow"]  # bob's job is not alice's
    assert names(client_alice, q="best.accuracy>=0.92") == ["live"]
    assert names(client_alice, q="best.loss<0.31") == ["live"]  # lowest is best for a loss
    assert names(client_alice, q="test.accuracy>0.9") == ["slow"]
    assert names(client_alice, q="optimizer=sgd") == ["fast"]
    assert sorted(names(client_alice, q="optimizer!=sgd")) == ["live", "mid wide", "slow"]
    assert names(client_alice, q="mixed_precision=true") == ["mid wide"]
    assert names(client_alice, q="model.dropout>0") == ["mid wide"]
    assert names(client_alice, q="dropout=0.1") == ["mid wide"]
    assert names(client_alice, q="tag:baseline") == ["slow"]
    assert names(client_alice, q="sweep") == ["mid wide"]  # free text matches a tag
    assert names(client_alice, q='"mid wide"') == ["mid wide"]
    assert names(client_alice, q="accuracy>0.5 loss<0.5 tag:lr-sweep") == ["mid wide"]
    # A job without the value never matches (no final metrics, no summary).
    job(runs["slow"].owner, "empty")
    assert "empty" not in names(client_alice, q="accuracy<1")
    assert "empty" not in names(client_alice, q="accuracy!=0.5")


def test_the_api_searches_the_same_way(alice, runs):
    api = _client(alice, api=True)
    r = api.get("/api/jobs/", {"q": "learning_rate<0.01 accuracy>0.9"})
    assert r.status_code == 200
    body = r.json()
    assert sorted(j["name"] for j in body["jobs"]) == ["live", "slow"] and body["total"] == 2
    slow = next(j for j in body["jobs"] if j["name"] == "slow")
    assert slow["tags"] == ["baseline"] and slow["archived"] is False and "summary" in slow


@pytest.mark.parametrize("q", ["learning_rate<", "accuracy>high", "lerning_rate<0.1", '"open', "a>>1", "x " * 30])
def test_a_bad_search_is_a_clear_400_never_a_500(client_alice, alice, runs, q):
    r = client_alice.get("/jobs/", {"format": "json", "q": q})
    assert r.status_code == 400 and r.json()["error"]
    page = client_alice.get("/jobs/", {"q": q})
    assert page.status_code == 400 and "Fix the search" in page.content.decode()
    api = _client(alice, api=True).get("/api/jobs/", {"q": q})
    assert api.status_code == 400 and api.json()["detail"]
    assert _client(alice, api=True).get("/api/jobs/", {"sort": "bogus"}).status_code == 400
    assert client_alice.get("/jobs/", {"format": "json", "per_page": "0"}).status_code == 400


def test_sort_by_column_and_by_metric(client_alice, runs):
    assert names(client_alice, sort="name") == ["fast", "live", "mid wide", "slow"]
    assert names(client_alice, sort="-name") == ["slow", "mid wide", "live", "fast"]
    assert names(client_alice, sort="-accuracy") == ["slow", "live", "mid wide", "fast"]  # live: 0.91 latest
    assert names(client_alice, sort="learning_rate")[:2] == ["slow", "live"]
    job(runs["slow"].owner, "no metrics")
    assert names(client_alice, sort="accuracy")[-1] == "no metrics"  # missing values last, either way
    assert names(client_alice, sort="-accuracy")[-1] == "no metrics"
    html = _client(runs["slow"].owner).get("/jobs/", {"sort": "name"}).content.decode()
    assert 'aria-sort="ascending"><a href="?sort=-name"' in html


def test_pages_cover_every_job_once(alice, client_alice):
    ds = ready_dataset(alice)
    Job.objects.bulk_create([Job(owner=alice, dataset=ds, name=f"j{i:03}", architecture="mlp") for i in range(53)])
    seen = []
    for page in (1, 2, 3):
        r = client_alice.get("/jobs/", {"format": "json", "per_page": 20, "page": page, "sort": "name"}).json()
        assert r["total"] == 53 and r["pages"] == 3 and r["page"] == page
        seen += [j["name"] for j in r["jobs"]]
    assert seen == [f"j{i:03}" for i in range(53)]
    assert client_alice.get("/jobs/", {"format": "json", "per_page": 20, "page": 99}).json()["page"] == 3
    html = client_alice.get("/jobs/", {"per_page": 20, "page": 2}).content.decode()
    assert "Page 2 of 3" in html and 'id="page-next" href="?per_page=20&amp;page=3"' in html


def test_the_list_costs_the_same_queries_for_5_or_40_jobs(alice, client_alice):
    ds = ready_dataset(alice)

    def make(n, status):
        for i in range(n):
            j = job(alice, f"{status}-{i}-{Job.objects.count()}", ds, status=status, tags=["a", "b"])
            append_events(j.pk, [("metric", {"split": "val", "step": 1, "values": {"accuracy": 0.5}})])

    def count(path):
        with CaptureQueriesContext(connection) as ctx:
            assert client_alice.get(path).status_code == 200
        return len(ctx.captured_queries)

    for status in (Job.Status.RUNNING, Job.Status.QUEUED, Job.Status.SUCCEEDED):
        make(2, status)
    small = {p: count(p) for p in ("/jobs/", "/jobs/?format=json", "/api/jobs/")}
    small_api = count("/api/jobs/?q=tag:a accuracy>0.1")
    for status in (Job.Status.RUNNING, Job.Status.QUEUED, Job.Status.SUCCEEDED):
        make(12, status)
    assert {p: count(p) for p in small} == small  # no query per row
    assert count("/api/jobs/?q=tag:a accuracy>0.1") == small_api
    assert Job.objects.filter(owner=alice).count() == 42


def test_archive_hides_from_the_default_list_and_keeps_everything(alice, client_alice):
    j = finished_job(alice)
    events = JobEvent.objects.filter(job=j).count()
    r = client_alice.post(f"/jobs/{j.pk}/archive/", {"archived": "1"})
    assert r.status_code == 302
    assert names(client_alice) == [] and names(client_alice, archived="only") == ["done"]
    assert names(client_alice, archived="all") == ["done"]
    j.refresh_from_db()
    assert j.archived_at is not None
    assert JobEvent.objects.filter(job=j).count() == events and j.artifacts.count() == 1
    assert (j.directory / "artifacts" / "config.json").is_file()
    assert client_alice.get(f"/jobs/{j.pk}/").status_code == 200  # its page stays
    client_alice.post(f"/jobs/{j.pk}/archive/", {"archived": "0"})
    assert names(client_alice) == ["done"]
    api = _client(alice, api=True)
    assert api.patch(f"/api/jobs/{j.pk}/", {"archived": True}, content_type="application/json").json()["archived"]
    assert api.get("/api/jobs/").json()["jobs"] == []
    assert [x["name"] for x in api.get("/api/jobs/", {"archived": "only"}).json()["jobs"]] == ["done"]


def test_tags_and_note_through_the_page_and_the_api(alice, client_alice):
    j = finished_job(alice)
    client_alice.post(f"/jobs/{j.pk}/tags/", {"tags": "Baseline, lr-sweep baseline"})
    assert sorted(JobTag.objects.filter(job=j).values_list("name", flat=True)) == ["baseline", "lr-sweep"]
    r = client_alice.post(f"/jobs/{j.pk}/tags/", {"tags": "ok, <script>"}, follow=True)
    assert "a tag is 1 to 40 letters" in r.content.decode()
    assert sorted(JobTag.objects.filter(job=j).values_list("name", flat=True)) == ["baseline", "lr-sweep"]  # unchanged
    note = "# Result\n\n**good** run <script>alert(1)</script> [x](javascript:alert(1))"
    client_alice.post(f"/jobs/{j.pk}/note/", {"note": note})
    html = client_alice.get(f"/jobs/{j.pk}/").content.decode()
    assert "<h1>Result</h1>" in html and "<strong>good</strong>" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript:' not in html
    api = _client(alice, api=True)
    r = api.patch(f"/api/jobs/{j.pk}/", {"tags": ["a", "b"], "note": "plain"}, content_type="application/json")
    assert r.status_code == 200 and r.json()["tags"] == ["a", "b"] and r.json()["note"] == "plain"
    r = api.patch(f"/api/jobs/{j.pk}/", {"tags": ["fine", "not fine!"], "note": "changed?"},
                  content_type="application/json")
    assert r.status_code == 400 and "not fine!" in r.json()["detail"]
    j.refresh_from_db()
    assert j.note == "plain" and j.tag_names == ["a", "b"]  # nothing changed
    r = api.patch(f"/api/jobs/{j.pk}/", {"tags": [f"t{i}" for i in range(21)]}, content_type="application/json")
    assert r.status_code == 400 and "at most 20 tags" in r.json()["detail"]
    assert api.patch(f"/api/jobs/{j.pk}/", {"note": "x" * 20_001}, content_type="application/json").status_code == 400


def test_others_cannot_tag_note_or_archive(alice, bob, staff):
    j = finished_job(alice)
    for user in (bob,):
        c = _client(user)
        assert c.post(f"/jobs/{j.pk}/tags/", {"tags": "x"}).status_code == 404
        assert c.post(f"/jobs/{j.pk}/note/", {"note": "x"}).status_code == 404
        assert c.post(f"/jobs/{j.pk}/archive/").status_code == 404
        assert _client(user, api=True).patch(f"/api/jobs/{j.pk}/", {"note": "x"},
                                             content_type="application/json").status_code == 404
    from django.contrib.auth.models import User

    viewer = User.objects.create_user("viewer", "v@example.com", "pw-viewer-123", is_staff=True)
    assert _client(viewer).post(f"/jobs/{j.pk}/archive/").status_code == 403  # sees it, may not change it
    j.refresh_from_db()
    assert j.note == "" and j.archived_at is None and not j.tags.exists()


def test_bulk_actions_change_only_what_the_user_may_and_say_so(alice, bob, client_alice):
    mine = [finished_job(alice) for _ in range(2)]
    run = running_job(alice)
    theirs = finished_job(bob)
    ids = [str(j.pk) for j in [*mine, run, theirs]] + ["00000000-0000-0000-0000-000000000000", "junk"]
    r = client_alice.post("/jobs/bulk/", {"action": "archive", "ids": ids}, follow=True)
    text = r.content.decode()
    assert "archive: 3 jobs done" in text and "skipped 3 (no such job)" in text
    theirs.refresh_from_db()
    assert theirs.archived_at is None
    assert Job.objects.filter(owner=alice, archived_at__isnull=False).count() == 3
    # Staff see bob's job: it is skipped as not theirs, and named.
    from django.contrib.auth.models import User

    viewer = User.objects.create_user("viewer", "v@example.com", "pw-viewer-123", is_staff=True)
    res = services.bulk_action(viewer, "tag", [str(theirs.pk)], tags="x")
    assert res.done == [] and res.skipped == [{"id": str(theirs.pk), "reason": "not yours (it belongs to bob)"}]
    api = _client(alice, api=True)
    r = api.post("/api/jobs/bulk/", {"action": "tag", "ids": ids[:4], "tags": ["best", "v2"]},
                 content_type="application/json")
    assert r.status_code == 200 and len(r.json()["done"]) == 3 and r.json()["skipped"][0]["id"] == str(theirs.pk)
    assert not theirs.tags.exists() and mine[0].tag_names == ["best", "v2"]
    r = api.post("/api/jobs/bulk/", {"action": "delete", "ids": ids[:4]}, content_type="application/json").json()
    assert sorted(r["done"]) == sorted(str(j.pk) for j in mine)
    assert {s["reason"] for s in r["skipped"]} == {"queued or running: cancel it first", "no such job"}
    assert Job.objects.filter(pk=theirs.pk).exists() and Job.objects.filter(pk=run.pk).exists()
    r = api.post("/api/jobs/bulk/", {"action": "cancel", "ids": [str(run.pk), str(theirs.pk)]},
                 content_type="application/json").json()
    assert r["done"] == [str(run.pk)]
    run.refresh_from_db()
    assert run.cancel_requested
    for bad in ({"action": "explode", "ids": [str(run.pk)]}, {"action": "tag", "ids": [str(run.pk)]},
                {"action": "tag", "ids": [str(run.pk)], "tags": ["bad tag!"]}, {"action": "archive", "ids": []}):
        assert api.post("/api/jobs/bulk/", bad, content_type="application/json").status_code == 400, bad


def test_repeat_with_seeds_clones_a_finished_job(alice, bob, client_alice, sent_tasks):
    src = job(alice, "base", train={"seed": 7}, tags=["baseline"])
    r = client_alice.post(f"/jobs/{src.pk}/repeat/", {"n": "3"})
    assert r.status_code == 302 and "/jobs/compare/?ids=" in r["Location"]
    clones = list(Job.objects.filter(owner=alice).exclude(pk=src.pk).order_by("name"))
    assert sorted(c.train_config["seed"] for c in clones) == [8, 9, 10]
    assert {c.status for c in clones} == {"queued"} and all(c.tag_names == ["baseline"] for c in clones)
    assert all(c.train_config[k] == v for c in clones for k, v in src.train_config.items() if k != "seed")
    api = _client(alice, api=True)
    assert api.post(f"/api/jobs/{src.pk}/repeat/", {"n": 0}, content_type="application/json").status_code == 400
    assert api.post(f"/api/jobs/{src.pk}/repeat/", {"n": 21}, content_type="application/json").status_code == 400
    live = running_job(alice)
    assert api.post(f"/api/jobs/{live.pk}/repeat/", {"n": 1}, content_type="application/json").status_code == 409
    assert _client(bob, api=True).post(f"/api/jobs/{src.pk}/repeat/", {"n": 1},
                                       content_type="application/json").status_code == 404


def test_repeat_is_all_or_nothing_at_the_limit(alice, settings, sent_tasks):
    settings.TRAINYARD_MAX_ACTIVE_JOBS_PER_USER = 4
    src = job(alice, "base")
    services.repeat_with_seeds(src, alice, 3)
    with pytest.raises(services.SubmitError) as exc:
        services.repeat_with_seeds(src, alice, 2)
    assert exc.value.status == 429 and "needs 2 job slots" in str(exc.value)
    assert Job.objects.filter(owner=alice, status="queued").count() == 3


def test_compare_draws_every_job_up_to_the_limit_and_marks_what_differs(alice, client_alice):
    jobs = [job(alice, f"run{i}", train={"seed": i % 3, "learning_rate": 0.01 * (1 + i % 2)},
                metrics={"accuracy": 0.5 + i / 100, "loss": 1 - i / 100}) for i in range(22)]
    url = "/jobs/compare/?" + "&".join(f"ids={j.pk}" for j in jobs)
    r = client_alice.get(url)
    assert len(r.context["jobs"]) == 22
    data = r.context["compare_json"]
    assert len(data["jobs"]) == 22 and data["group"] == ""
    html = r.content.decode()
    assert '<tr class="differs"><th>dataset</th>' in html  # each job has its own dataset here
    assert "<tr><th>architecture</th>" in html  # all mlp
    rows = {m["name"]: m for m in r.context["metrics"]}
    best_acc = [c["best"] for c in rows["final accuracy"]["cells"]]
    best_loss = [c["best"] for c in rows["final loss"]["cells"]]
    assert best_acc.index(True) == 21 and best_acc.count(True) == 1
    assert best_loss.index(True) == 21 and rows["final loss"]["better"] == "lower"
    r = client_alice.get(url + "&group=learning_rate")
    groups = {j["group"] for j in r.context["compare_json"]["jobs"]}
    assert groups == {"0.01", "0.02"} and "learning_rate" in r.context["groups"]
    many = [job(alice, f"more{i}") for i in range(31)]
    r = client_alice.get("/jobs/compare/?" + "&".join(f"ids={j.pk}" for j in jobs + many))
    assert len(r.context["jobs"]) == 50 and "Showing the first 50 of the 53" in r.content.decode()


def test_saved_compare_views_are_per_user_and_reopen(alice, bob, client_alice):
    a, b = job(alice, "a"), job(alice, "b")
    r = client_alice.post("/jobs/compare/save/", {"name": "lr study", "ids": [str(a.pk), str(b.pk)],
                                                  "group": "learning_rate"})
    view = CompareView.objects.get(owner=alice)
    assert r.status_code == 302 and r["Location"] == f"/jobs/compare/views/{view.pk}/"
    page = client_alice.get(r["Location"])
    assert page.status_code == 200 and [str(j.pk) for j in page.context["jobs"]] == [str(a.pk), str(b.pk)]
    assert "lr study" in page.content.decode()
    # The same name again replaces it; another user sees nothing of it and cannot save others' jobs.
    client_alice.post("/jobs/compare/save/", {"name": "lr study", "ids": [str(a.pk)]})
    assert CompareView.objects.get(owner=alice).job_ids == [str(a.pk)]
    bob_client = _client(bob)
    assert bob_client.get(f"/jobs/compare/views/{view.pk}/").status_code == 404
    assert bob_client.post(f"/jobs/compare/views/{view.pk}/delete/").status_code == 404
    bob_client.post("/jobs/compare/save/", {"name": "stolen", "ids": [str(a.pk)]})
    assert not CompareView.objects.filter(owner=bob).exists()
    # A deleted job leaves the view, said so.
    client_alice.post("/jobs/compare/save/", {"name": "both", "ids": [str(a.pk), str(b.pk)]})
    both = CompareView.objects.get(name="both")
    services.delete_job(b)
    page = client_alice.get(f"/jobs/compare/views/{both.pk}/")
    assert len(page.context["jobs"]) == 1 and "1 job of this view no longer exist" in page.content.decode()
    assert client_alice.post(f"/jobs/compare/views/{both.pk}/delete/").status_code == 302
    assert not CompareView.objects.filter(pk=both.pk).exists()
