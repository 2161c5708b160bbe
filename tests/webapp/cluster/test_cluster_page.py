"""The cluster page (every signed-in user): workers by host with live device telemetry, what runs
where, the queue in dispatch order with wait reasons — and of other users' jobs only what is safe."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.webapp.factories import ready_dataset
from webapp.cluster.models import Worker
from webapp.jobs import scheduler
from webapp.jobs.models import Job

GB = 1_000_000_000
L4 = {"index": 0, "name": "NVIDIA L4", "memory_total": 24 * GB, "memory_used": 6 * GB, "utilization": 37,
      "temperature": 61, "capability": "8.9"}


def _worker(name, host="gpu-host-1", gpus=(), **kw):
    return Worker.objects.create(name=name, hostname=host, queues=f"train,train.{name}", gpus=list(gpus),
                                 device="cuda:0" if gpus else "cpu", **kw)


def _job(owner, name, minutes_ago=0, dataset=None, **kw):
    j = Job.objects.create(owner=owner, name=name, architecture="mlp", dataset=dataset,
                           train_config={"epochs": 7, "learning_rate": 0.0123}, **kw)
    Job.objects.filter(pk=j.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
    j.refresh_from_db()
    return j


def _state(user) -> dict:
    c = Client()
    c.force_login(user)
    r = c.get("/cluster/state/")
    assert r.status_code == 200
    return r.json()


@pytest.fixture
def cluster(alice, bob):
    """Host gpu-host-1 runs alice's job on an L4; host cpu-box runs bob's; a dead worker; a queue."""
    ds = ready_dataset(alice, name="alices-secret-data")
    _worker("w1@gpu-host-1", gpus=[L4])
    _worker("w2@cpu-box", host="cpu-box")
    _worker("dead@cpu-box", host="cpu-box", last_heartbeat=timezone.now() - timedelta(minutes=5))
    running_a = _job(alice, "alices-running-job", dataset=ds, status=Job.Status.RUNNING, worker_name="w1@gpu-host-1",
                     step=30, total_steps=100, epoch=2)
    running_b = _job(bob, "bobs-running-job", status=Job.Status.RUNNING, worker_name="w2@cpu-box")
    # Queue: alice and bob run one job each (fair share is equal), so priority, then age: alice's
    # L40S job (oldest; no such GPU: it holds no place), alice's job, then bob's older one at -5.
    q_bob = _job(bob, "bobs-queued-job", minutes_ago=30, priority=-5)
    q_alice = _job(alice, "alices-queued-job", minutes_ago=10)
    q_gpu = _job(alice, "alices-big-gpu-job", minutes_ago=40, gpu_type="L40S", min_gpu_memory_gb=48)
    return {"running_a": running_a, "running_b": running_b, "q_bob": q_bob, "q_alice": q_alice, "q_gpu": q_gpu}


def _worker_row(state, name):
    return next(w for h in state["hosts"] for w in h["workers"] if w["name"] == name)


def test_workers_by_host_with_live_devices_and_the_job_on_each(alice, cluster):
    state = _state(alice)
    assert [h["hostname"] for h in state["hosts"]] == ["cpu-box", "gpu-host-1"]
    assert [w["name"] for w in state["hosts"][0]["workers"]] == ["dead@cpu-box", "w2@cpu-box"]
    w1 = _worker_row(state, "w1@gpu-host-1")
    assert w1["state"] == "busy" and w1["alive"]
    assert w1["gpus"] == [{"index": 0, "name": "NVIDIA L4", "memory_used": 6 * GB, "memory_total": 24 * GB,
                           "utilization": 37, "temperature": 61}]
    assert w1["job"]["name"] == "alices-running-job" and w1["job"]["mine"] and w1["job"]["epoch"] == 2
    assert w1["job"]["progress"] == 0.3 and w1["job"]["devices"] == 1
    dead = _worker_row(state, "dead@cpu-box")
    assert dead["state"] == "offline" and not dead["alive"] and dead["heartbeat_age_seconds"] >= 299
    assert state["counts"] == {"workers": 3, "alive": 2, "running": 2, "queued": 3}


def test_the_queue_is_in_dispatch_order_with_the_dispatchers_reasons(alice, bob, cluster):
    state = _state(alice)
    names = [q["job"].get("name", q["job"].get("label")) for q in state["queue"]]
    # The same order and words as a dispatcher pass would write.
    assert names == ["alices-big-gpu-job", "alices-queued-job", "another user's job"]
    assert [q["position"] for q in state["queue"]] == [1, 2, 3]
    reasons = [q["reason"] for q in state["queue"]]
    assert reasons[0] == "waiting for a L40S GPU with ≥ 48 GB: no such worker is online"
    assert reasons[1] == "waiting for a free worker; next"
    assert reasons[2] == "waiting for a free worker; 1 ahead"
    assert Job.objects.filter(wait_reason="").count() == Job.objects.count()  # read-only: nothing written
    scheduler.dispatch()  # no free worker: the pass writes the same reasons
    for q, j in zip(state["queue"], [cluster["q_gpu"], cluster["q_alice"], cluster["q_bob"]]):
        j.refresh_from_db()
        assert j.wait_reason == q["reason"]


def test_a_free_worker_shows_the_job_the_next_pass_gives_it(alice, cluster):
    _worker("w3@gpu-host-1", gpus=[L4])
    state = _state(alice)
    first = state["queue"][0]
    assert first["job"]["name"] == "alices-queued-job" and first["worker"] == "w3@gpu-host-1"
    assert first["code"] == "next"
    Job.objects.filter(pk=cluster["q_alice"].pk).update(dispatched_at=timezone.now(), worker_name="w3@gpu-host-1")
    first = _state(alice)["queue"][0]
    assert first["code"] == "starting" and first["worker"] == "w3@gpu-host-1"


def test_other_users_jobs_show_only_what_is_safe(alice, bob, charlie, cluster):
    """bob and charlie see that alice's jobs exist, their state and devices — never their names,
    owner, dataset, settings or the GPU she asked for."""
    for viewer in (bob, charlie):
        c = Client()
        c.force_login(viewer)
        raw = c.get("/cluster/state/").content.decode() + c.get("/cluster/").content.decode()
        for secret in ("alices-running-job", "alices-queued-job", "alices-big-gpu-job", "alices-secret-data",
                       "alice", "L40S", "48 GB", "0.0123", str(cluster["running_a"].pk), str(cluster["q_gpu"].pk)):
            assert secret not in raw, (viewer.username, secret)
        state = _state(viewer)
        w1 = _worker_row(state, "w1@gpu-host-1")
        assert w1["job"] == {"status": "running", "devices": 1, "mine": False, "visible": False,
                             "label": "another user's job", "usage": None}
        hidden = [q for q in state["queue"] if not q["job"]["visible"]]
        assert [q["reason"] for q in hidden if q["code"] == "no_fit"] == [
            "waiting for a worker that meets its GPU requirements: none is online"]
    # bob sees his own by name; charlie sees none by name
    assert _worker_row(_state(bob), "w2@cpu-box")["job"]["name"] == "bobs-running-job"
    assert all(not q["job"]["visible"] for q in _state(charlie)["queue"])


def test_staff_see_names(staff, cluster):
    state = _state(staff)
    assert _worker_row(state, "w1@gpu-host-1")["job"]["owner"] == "alice"
    assert all(q["job"]["visible"] for q in state["queue"])


def test_the_page_embeds_the_state_and_links_from_the_nav(alice, cluster):
    c = Client()
    c.force_login(alice)
    html = c.get("/cluster/").content.decode()
    assert 'href="/cluster/"' in html and 'id="cluster-data"' in html and "js/cluster.js" in html
    data = json.loads(html.split('id="cluster-data" type="application/json">', 1)[1].split("</script>", 1)[0])
    assert data["counts"]["running"] == 2
    assert "Operate workers" not in html  # staff with the change permission only


def test_queries_do_not_grow_with_the_cluster(alice, bob, django_assert_max_num_queries):
    for i in range(3):
        _worker(f"w{i}@h{i}")
        _job(bob, f"r{i}", status=Job.Status.RUNNING, worker_name=f"w{i}@h{i}")
        _job(alice, f"q{i}")
    from webapp.cluster.state import cluster_state

    with django_assert_max_num_queries(12) as small:
        cluster_state(alice)
    for i in range(3, 30):
        _worker(f"w{i}@h{i}")
        _job(bob, f"r{i}", status=Job.Status.RUNNING, worker_name=f"w{i}@h{i}")
        _job(alice, f"q{i}")
    with django_assert_max_num_queries(len(small.captured_queries)):
        state = cluster_state(alice)
    assert state["counts"] == {"workers": 30, "alive": 30, "running": 30, "queued": 30}


def test_the_worker_card_has_the_running_jobs_latest_resource_sample(alice, bob, cluster):
    from webapp.jobs.events import append_events

    job = cluster["running_a"]
    append_events(job.pk, [("resources", {"t": 1.0, "cpu_percent": 10.0, "rss": 1, "cpus": 2})])
    append_events(job.pk, [("resources", {"t": 2.0, "cpu_percent": 97.5, "rss": 400_000_000, "cpus": 2,
                                          "gpu_memory": 5 * GB, "gpu_memory_total": 24 * GB, "gpu_util": 80,
                                          "gpu_source": "process"})])
    for viewer in (alice, bob):  # resource use is no setting of the job: the same for everyone
        usage = _worker_row(_state(viewer), "w1@gpu-host-1")["job"]["usage"]
        assert usage == {"cpu_percent": 97.5, "rss": 400_000_000, "cpus": 2, "gpu_util": 80, "gpu_memory": 5 * GB,
                         "gpu_memory_total": 24 * GB, "gpu_source": "process", "t": 2.0}
    assert _worker_row(_state(alice), "w2@cpu-box")["job"]["usage"] is None  # no sample yet
