"""Admin → Workers as an operations view: read-only rows (heartbeat to the second, devices once,
the running job), no add or edit, and the operators' actions — drain, undrain, forget a dead
worker — staff with the permission only, each audited."""

from __future__ import annotations

import re
from datetime import timedelta

from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from tests.webapp.factories import running_job, worker
from webapp.accounts.models import AuditEvent
from webapp.cluster.models import Worker
from webapp.jobs import scheduler
from workers.adapters import registry

GB = 1_000_000_000
LIST = "admin:cluster_worker_changelist"


def _act(client, action, *workers):
    return client.post(reverse(LIST), {"action": action, "_selected_action": [w.pk for w in workers]}, follow=True)


def test_the_list_is_read_only_with_seconds_devices_once_and_the_job(client, staff, alice):
    w = worker("w1@gpu-host", gpus=[{"index": 0, "name": "NVIDIA L4", "memory_total": 24 * GB,
                                     "memory_used": 6 * GB, "utilization": 37}])
    job = running_job(alice)
    scheduler.set_current_job(w.name, job.pk)
    client.force_login(staff)
    html = client.get(reverse(LIST)).content.decode()
    assert re.search(r"\d{2}:\d{2}:\d{2} \(\d+ s ago\)", html)  # to the second
    assert html.count("NVIDIA L4") == 1 and "util 37%" in html
    assert "running" in html and job.name in html
    assert "/admin/cluster/worker/add/" not in html and 'value="delete_selected"' not in html
    for action in ("drain", "resume", "forget", "cancel_running_job", "retire"):
        assert f'value="{action}"' in html
    assert client.get(reverse("admin:cluster_worker_add")).status_code == 403
    # The stock delete page is gone too: a live worker cannot be removed behind the scheduler's back.
    client.post(reverse("admin:cluster_worker_delete", args=[w.pk]), {"post": "yes"})
    assert Worker.objects.filter(pk=w.pk).exists()


def test_a_workers_page_is_a_read_only_view_with_action_buttons(client, staff, alice):
    w = worker("w1@host")
    client.force_login(staff)
    page = client.get(reverse("admin:cluster_worker_change", args=[w.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and 'id="worker-heartbeat"' in html
    assert re.search(r"\(\d+ s ago\)", html)
    assert 'name="status"' not in html and 'name="gpus"' not in html  # nothing to edit
    assert html.count('name="_selected_action"') == 5  # one form per action
    # A POST to the page changes nothing.
    client.post(reverse("admin:cluster_worker_change", args=[w.pk]), {"status": "retired", "draining": "on"})
    w.refresh_from_db()
    assert w.status == Worker.Status.ONLINE and not w.draining
    # The page's buttons go through the list's actions: drain, then undrain.
    client.post(reverse(LIST), {"action": "drain", "_selected_action": [w.pk], "index": "0"})
    w.refresh_from_db()
    assert w.draining
    client.post(reverse(LIST), {"action": "resume", "_selected_action": [w.pk], "index": "0"})
    w.refresh_from_db()
    assert not w.draining
    actions = list(AuditEvent.objects.filter(object_id=str(w.pk)).values_list("action", "actor_name"))
    assert ("worker.drain", "root") in actions and ("worker.resume", "root") in actions


def test_forget_removes_dead_workers_only_and_is_audited(client, staff):
    dead = worker("dead@host", heartbeat_age=600, status=Worker.Status.OFFLINE)
    silent = worker("silent@host", heartbeat_age=600)  # online by its row, past the liveness rule
    alive = worker("alive@host")
    client.force_login(staff)
    r = _act(client, "forget", dead, silent, alive)
    text = r.content.decode()
    assert "Forgot 2 worker(s): dead@host, silent@host" in text
    assert "still alive" in text and "alive@host" in text
    assert list(Worker.objects.values_list("name", flat=True)) == ["alive@host"]
    forgotten = AuditEvent.objects.filter(action="worker.forget")
    assert sorted(forgotten.values_list("object_repr", flat=True)) == ["dead@host", "silent@host"]
    assert all(e.actor_name == "root" and e.details["hostname"] == "host" for e in forgotten)


def test_a_forgotten_worker_that_comes_back_registers_again(db):
    registry.register("back@host", ["train"])
    Worker.objects.filter(name="back@host").update(last_heartbeat=timezone.now() - timedelta(hours=1))
    Worker.objects.filter(name="back@host").delete()  # forgotten while unreachable
    registry.heartbeat("back@host", ["train"])
    w = Worker.objects.get(name="back@host")
    assert w.is_alive and w.queues == "train"


def test_actions_need_staff_and_the_permission(client, alice):
    w = worker("dead@host", heartbeat_age=600)
    client.force_login(alice)  # not staff: the admin sends them to its login
    assert client.get(reverse(LIST)).status_code == 302
    _act(client, "forget", w)
    _act(client, "drain", w)
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_worker"))
    client.force_login(viewer)
    html = client.get(reverse(LIST)).content.decode()
    assert "dead@host" in html and 'value="forget"' not in html and 'value="drain"' not in html
    assert 'name="_selected_action"' not in client.get(reverse("admin:cluster_worker_change", args=[w.pk])).content.decode()
    _act(client, "forget", w)
    _act(client, "drain", w)
    w.refresh_from_db()
    assert not w.draining and not AuditEvent.objects.filter(action__startswith="worker.").exists()
    viewer.user_permissions.add(Permission.objects.get(codename="change_worker"))
    client.force_login(User.objects.get(pk=viewer.pk))
    _act(client, "forget", w)  # forgetting needs the delete permission
    assert Worker.objects.filter(pk=w.pk).exists()
    viewer.user_permissions.add(Permission.objects.get(codename="delete_worker"))
    client.force_login(User.objects.get(pk=viewer.pk))
    _act(client, "forget", w)
    assert not Worker.objects.filter(pk=w.pk).exists()


def test_staff_with_the_permission_get_the_operate_link_on_the_cluster_page(client, staff, alice):
    client.force_login(staff)
    assert "Operate workers" in client.get("/cluster/").content.decode()
