"""Staff may see every user's objects, but writing to another user's needs the matching Django
permission (or superuser): the staff flag alone changes nothing of anyone's (webapp/jobs/access.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from tests.webapp.factories import finished_job, ready_dataset, running_job
from tests.webapp.test_try import text_job
from webapp.datasets.models import Dataset
from webapp.hub.models import LocalModel
from webapp.inference.models import OnnxExport
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def helpdesk(db):
    """Staff (may open the admin, sees everything) without any permission."""
    return User.objects.create_user("helpdesk", "h@example.com", "pw-helpdesk-1", is_staff=True)


def _client(user):
    c = Client()
    c.force_login(user)
    return c


def _writes(alice, bob, charlie):
    """Every write route on another user's objects: (name, method, url, data, permission, check)."""
    ds = ready_dataset(alice, "private")
    ds2 = ready_dataset(alice, "private2")
    ds3 = ready_dataset(alice, "private3")
    done = finished_job(alice)
    done2 = finished_job(alice)
    running = running_job(alice)
    running2 = running_job(alice)
    ds4, ds5, ds6 = (ready_dataset(alice, f"private{n}") for n in (4, 5, 6))
    for shared in (ds4, ds5):
        shared.shared_with.add(charlie)
    zoo = text_job(alice)  # a succeeded zoo job that can be exported to ONNX
    model = LocalModel.objects.create(owner=alice, name="alice-model", task="text-classification",
                                      path="/nonexistent", status="ready")
    return [
        ("api dataset patch", "patch", f"/api/datasets/{ds.pk}/", {"name": "pwned"}, "datasets.change_dataset",
         lambda: Dataset.objects.get(pk=ds.pk).name == "pwned"),
        ("api dataset share", "post", f"/api/datasets/{ds.pk}/share/", {"username": "bob"}, "datasets.change_dataset",
         lambda: Dataset.objects.get(pk=ds.pk).shared_with.filter(pk=bob.pk).exists()),
        ("page dataset share", "form", f"/datasets/{ds2.pk}/share/", {"username": "bob"}, "datasets.change_dataset",
         lambda: Dataset.objects.get(pk=ds2.pk).shared_with.filter(pk=bob.pk).exists()),
        ("page dataset edit", "form", f"/datasets/{ds2.pk}/edit/", {"name": "pwned2"}, "datasets.change_dataset",
         lambda: Dataset.objects.get(pk=ds2.pk).name == "pwned2"),
        ("api dataset delete", "delete", f"/api/datasets/{ds3.pk}/", None, "datasets.delete_dataset",
         lambda: not Dataset.objects.filter(pk=ds3.pk).exists()),
        ("api job cancel", "post", f"/api/jobs/{running.pk}/cancel/", None, "jobs.change_job",
         lambda: Job.objects.get(pk=running.pk).cancel_requested),
        ("page job cancel", "form", f"/jobs/{running2.pk}/cancel/", None, "jobs.change_job",
         lambda: Job.objects.get(pk=running2.pk).cancel_requested),
        ("api job delete", "delete", f"/api/jobs/{done.pk}/", None, "jobs.delete_job",
         lambda: not Job.objects.filter(pk=done.pk).exists()),
        ("page job delete", "form", f"/jobs/{done2.pk}/delete/", None, "jobs.delete_job",
         lambda: not Job.objects.filter(pk=done2.pk).exists()),
        ("api dataset unshare", "post", f"/api/datasets/{ds4.pk}/share/", {"username": "charlie", "action": "remove"},
         "datasets.change_dataset", lambda: not Dataset.objects.get(pk=ds4.pk).shared_with.exists()),
        ("page dataset unshare", "form", f"/datasets/{ds5.pk}/share/", {"username": "charlie", "action": "remove"},
         "datasets.change_dataset", lambda: not Dataset.objects.get(pk=ds5.pk).shared_with.exists()),
        ("page dataset delete", "form", f"/datasets/{ds6.pk}/delete/", None, "datasets.delete_dataset",
         lambda: not Dataset.objects.filter(pk=ds6.pk).exists()),
        ("page onnx export", "form", f"/jobs/{zoo.pk}/onnx/", None, "jobs.change_job",
         lambda: OnnxExport.objects.filter(job=zoo).exists()),
        ("page model delete", "form", f"/models/{model.pk}/delete/", None, "hub.delete_localmodel",
         lambda: not LocalModel.objects.filter(pk=model.pk).exists()),
    ]


def _send(client, method, url, data):
    if method == "form":
        return client.post(url, data or {})
    if method == "patch":
        return client.patch(url, data, content_type="application/json")
    if method == "delete":
        return client.delete(url)
    return client.post(url, data or {}, content_type="application/json")


def test_staff_without_permissions_changes_nothing_of_others(alice, bob, charlie, helpdesk):
    c = _client(helpdesk)
    for name, method, url, data, _perm, changed in _writes(alice, bob, charlie):
        r = _send(c, method, url, data)
        assert r.status_code == 403, (name, r.status_code, r.content[:300])
        assert not changed(), f"{name}: changed without the permission"
    # seeing stays as it was
    assert c.get(f"/api/datasets/{Dataset.objects.filter(owner=alice).first().pk}/").status_code == 200


def test_staff_with_the_matching_permission_may(alice, bob, charlie, helpdesk):
    writes = _writes(alice, bob, charlie)
    for name, method, url, data, perm, changed in writes:
        app, codename = perm.split(".")
        helpdesk.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    helpdesk = User.objects.get(pk=helpdesk.pk)  # fresh permission cache
    c = _client(helpdesk)
    for name, method, url, data, _perm, changed in writes:
        r = _send(c, method, url, data)
        assert r.status_code < 400, (name, r.status_code, r.content[:300])
        assert changed(), f"{name}: not changed with the permission"
