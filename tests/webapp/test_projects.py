"""Projects: the verbs (create, members, roles, delete), what each role may do with a teammate's
items, which datasets a project's job may use, and that nothing is lost when people or projects go."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.webapp.factories import api_token, finished_job, ready_dataset, running_job
from webapp.accounts.models import AuditEvent
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job
from webapp.projects import services
from webapp.projects.models import Membership, Project


def api(user) -> Client:
    c = Client()
    c.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(user)}"
    return c


def page(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def team(alice, bob, charlie):
    """alice maintains "vision"; bob is a member; charlie a viewer."""
    p = services.create_project(alice, "vision")
    services.add_member(alice, p, "bob", "member")
    services.add_member(alice, p, "charlie", "viewer")
    return p


def _in(project, obj):
    type(obj).objects.filter(pk=obj.pk).update(project=project)
    obj.refresh_from_db()
    return obj


@pytest.mark.django_db
def test_create_names_are_unique_ignoring_case_and_bad_input_changes_nothing(alice, bob):
    r = api(alice).post("/api/projects/", {"name": "  Vision  "}, content_type="application/json")
    assert r.status_code == 201 and r.json()["name"] == "Vision" and r.json()["role"] == "maintainer"
    assert r.json()["members"] == [{"username": "alice", "role": "maintainer", "since": r.json()["members"][0]["since"]}]
    for body in ({"name": "vision"}, {"name": ""}, {"name": "x" * 101}, {"name": "a\x00b"}, {}):
        r = api(bob).post("/api/projects/", body, content_type="application/json")
        assert r.status_code == 400 and r.json()["errors"], body
    assert Project.objects.count() == 1 and Membership.objects.count() == 1
    assert AuditEvent.objects.filter(action="project.create").count() == 1


@pytest.mark.django_db
def test_members_are_added_by_exact_username_and_managed_by_maintainers_only(team, alice, bob, charlie):
    c = api(alice)
    url = f"/api/projects/{team.pk}/members/"
    assert c.post(url, {"username": "nobody"}, content_type="application/json").json()["errors"]["username"] == \
        "username: there is no active user called “nobody”"
    assert c.post(url, {"username": "bob"}, content_type="application/json").status_code == 400  # already in
    assert c.post(url, {"username": "bob", "role": "owner"}, content_type="application/json").status_code == 400
    # A member may not manage the members; the refusal names the rule.
    r = api(bob).post(url, {"username": "root"}, content_type="application/json")
    assert r.status_code == 403 and "only a maintainer" in r.json()["detail"]
    assert api(bob).patch(url + "charlie/", {"role": "maintainer"}, content_type="application/json").status_code == 403
    assert page(bob).post(f"/projects/{team.pk}/members/charlie/", {"role": "maintainer"}).status_code == 403
    assert dict(team.memberships.values_list("user__username", "role")) == {
        "alice": "maintainer", "bob": "member", "charlie": "viewer"}
    r = c.patch(url + "charlie/", {"role": "member"}, content_type="application/json")
    assert r.status_code == 200 and r.json()["role"] == "member"
    assert c.patch(url + "nobody/", {"role": "member"}, content_type="application/json").status_code == 404


@pytest.mark.django_db
def test_the_last_maintainer_stays(team, alice, bob):
    c = api(alice)
    url = f"/api/projects/{team.pk}/members/alice/"
    assert c.patch(url, {"role": "member"}, content_type="application/json").status_code == 409
    assert c.delete(url).status_code == 409
    assert team.memberships.get(user=alice).role == "maintainer"
    c.patch(f"/api/projects/{team.pk}/members/bob/", {"role": "maintainer"}, content_type="application/json")
    assert c.patch(url, {"role": "viewer"}, content_type="application/json").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_two_maintainers_stepping_down_at_once_leave_one(alice, bob):
    p = services.create_project(alice, "race")
    services.add_member(alice, p, "bob", "maintainer")
    start, results = threading.Barrier(2), []

    def step_down(user):
        try:
            start.wait()
            services.change_role(user, p, user.username, "member")
            results.append("ok")
        except services.ProjectError as exc:
            results.append(exc.status)
        finally:
            connection.close()

    threads = [threading.Thread(target=step_down, args=(u,)) for u in (alice, bob)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results, key=str) == [409, "ok"]
    assert Membership.objects.filter(project=p, role="maintainer").count() == 1


@pytest.mark.django_db
def test_each_role_with_a_teammates_job(team, alice, bob, charlie, sent_tasks):
    job = _in(team, running_job(bob))
    # The viewer sees it, cannot cancel it; the refusal says why.
    assert api(charlie).get(f"/api/jobs/{job.pk}/").json()["project_name"] == "vision"
    r = api(charlie).post(f"/api/jobs/{job.pk}/cancel/")
    assert r.status_code == 403 and "you are a viewer of project “vision”" in r.json()["detail"]
    # The owner (a member) cancels their own; a maintainer cancels anyone's.
    other = _in(team, running_job(charlie))
    assert api(bob).post(f"/api/jobs/{other.pk}/cancel/").status_code == 403  # a member: not a teammate's
    assert api(alice).post(f"/api/jobs/{other.pk}/cancel/").status_code in (200, 202)
    assert api(bob).post(f"/api/jobs/{job.pk}/cancel/").status_code in (200, 202)
    job.refresh_from_db()
    other.refresh_from_db()
    assert job.cancel_requested and other.cancel_requested


@pytest.mark.django_db
def test_a_project_job_uses_own_shared_or_the_projects_datasets_only(team, alice, bob, charlie, sent_tasks):
    elsewhere = services.create_project(bob, "audio")
    mine, shared = ready_dataset(bob, "mine"), ready_dataset(charlie, "shared")
    shared.shared_with.add(bob)
    teams = _in(team, ready_dataset(alice, "team-data"))
    audio = _in(elsewhere, ready_dataset(bob, "audio-data"))
    for ds, ok in ((mine, True), (shared, True), (teams, True), (audio, False)):
        r = api(bob).post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp", "project": str(team.pk)},
                          content_type="application/json")
        assert (r.status_code == 201) is ok, (ds.name, r.json())
        if not ok:
            assert "belongs to another project" in r.json()["errors"]["dataset"]
    # As a personal job, the other project's dataset is fine (only bob sees the job).
    r = api(bob).post("/api/jobs/", {"dataset": str(audio.pk), "architecture": "mlp"}, content_type="application/json")
    assert r.status_code == 201 and r.json()["project"] is None
    assert Job.objects.filter(owner=bob, dataset=audio).count() == 1


@pytest.mark.django_db
def test_removing_a_member_loses_nothing(team, alice, bob, charlie):
    job = _in(team, finished_job(bob))
    teammates = _in(team, finished_job(alice))
    assert api(alice).delete(f"/api/projects/{team.pk}/members/bob/").status_code == 204
    job.refresh_from_db()
    assert job.project_id == team.pk  # stays in the project ...
    assert api(charlie).get(f"/api/jobs/{job.pk}/").status_code == 200  # ... for its members
    assert api(bob).get(f"/api/jobs/{job.pk}/").status_code == 200  # and its owner keeps it
    assert api(bob).get(f"/api/jobs/{teammates.pk}/").status_code == 404  # not the others' any more
    # A member may leave by themselves.
    assert api(charlie).delete(f"/api/projects/{team.pk}/members/charlie/").status_code == 204
    assert api(charlie).get(f"/api/projects/{team.pk}/").status_code == 404


@pytest.mark.django_db
def test_deleting_a_project_moves_its_items_to_their_owners(team, alice, bob, charlie):
    job, ds = _in(team, finished_job(bob)), _in(team, ready_dataset(charlie, "c-data"))
    assert api(bob).delete(f"/api/projects/{team.pk}/").status_code == 403  # a member may not
    assert page(charlie).post(f"/projects/{team.pk}/delete/").status_code == 403
    r = page(alice).post(f"/projects/{team.pk}/delete/", follow=True)
    assert "Its items (1 job, 1 dataset) are now in their owners" in r.content.decode()
    assert not Project.objects.exists()
    job.refresh_from_db()
    ds.refresh_from_db()
    assert job.project_id is None and ds.project_id is None
    assert api(bob).get(f"/api/jobs/{job.pk}/").status_code == 200
    assert api(alice).get(f"/api/jobs/{job.pk}/").status_code == 404
    assert AuditEvent.objects.get(action="project.delete").details["moved"]["jobs"] == 1


@pytest.mark.django_db
def test_the_gpu_quota_is_an_administrators_setting(team, alice, staff):
    r = api(alice).patch(f"/api/projects/{team.pk}/", {"gpu_quota": 8}, content_type="application/json")
    assert r.status_code == 403 and "administrator" in r.json()["detail"]
    r = api(alice).patch(f"/api/projects/{team.pk}/", {"name": "Vision 2"}, content_type="application/json")
    assert r.status_code == 200 and r.json()["name"] == "Vision 2"
    r = api(staff).patch(f"/api/projects/{team.pk}/", {"gpu_quota": 2}, content_type="application/json")
    assert r.status_code == 200 and r.json()["gpu_quota"] == 2
    assert api(staff).patch(f"/api/projects/{team.pk}/", {"gpu_quota": -1},
                            content_type="application/json").status_code == 400
    team.refresh_from_db()
    assert team.gpu_quota == 2 and team.name == "Vision 2"


@pytest.mark.django_db
def test_the_pages_show_the_project_and_its_selector(team, alice, bob, charlie):
    job = _in(team, finished_job(bob))
    html = page(alice).get(f"/projects/{team.pk}/").content.decode()
    assert job.name in html and 'id="add-member"' in html and "Delete project" in html
    viewer = page(charlie).get(f"/projects/{team.pk}/").content.decode()
    assert job.name in viewer and 'id="add-member"' not in viewer and "Leave the project" in viewer
    listing = page(charlie).get(f"/jobs/?project={team.pk}").content.decode()
    assert job.name in listing and 'data-label="Project" data-field="project">vision<' in listing
    assert job.name not in page(charlie).get("/jobs/?project=personal").content.decode()
    for url in ("/jobs/new/", "/datasets/", "/sweeps/new/", "/models/"):
        assert f'<option value="{team.pk}">vision</option>' in page(bob).get(url).content.decode(), url
        assert f'value="{team.pk}"' not in page(charlie).get(url).content.decode(), url  # a viewer adds nothing


@pytest.mark.django_db
def test_the_jobs_list_costs_the_same_queries_for_many_project_jobs(team, alice, bob):
    ds = _in(team, ready_dataset(bob))

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert api(alice).get("/api/jobs/").status_code == 200
            assert page(alice).get("/jobs/?format=json").status_code == 200
        return len(ctx.captured_queries)

    Job.objects.bulk_create([Job(owner=bob, project=team, dataset=ds, name=f"j{i}", architecture="mlp",
                                 status="succeeded") for i in range(3)])
    few = count()
    Job.objects.bulk_create([Job(owner=bob, project=team, dataset=ds, name=f"k{i}", architecture="mlp",
                                 status="succeeded") for i in range(30)])
    assert count() == few
    assert Dataset.objects.count() == 1
