"""A worker killed mid-job (SIGKILL): another worker notices the lapsed lease, the job resumes
from its last checkpoint and finishes once, with its event history continuous."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.stack import running_stack, wait_for, write_separable_csv

pytestmark = pytest.mark.stack


@pytest.fixture
def own_stack():
    with running_stack(env={"TRAINYARD_JOB_LEASE_SECONDS": "4", "TRAINYARD_HEARTBEAT_SECONDS": "1"}) as s:
        yield s


def long_job(s, tmp_path, rows: int, epochs: int) -> tuple:
    """alice's MLP job on a separable table, batch 2: many steps per epoch, one checkpoint each."""
    api = s.api("alice")
    with open(write_separable_csv(tmp_path / "d.csv", n=rows), "rb") as f:
        ds = api.post(s.url("/api/datasets/"), files={"file": ("d.csv", f)}).json()
    s.wait_dataset(api, ds["id"])
    job = api.post(s.url("/api/jobs/"), json={
        "dataset": ds["id"], "architecture": "mlp",
        "train_config": {"epochs": epochs, "batch_size": 2, "learning_rate": 0.001, "seed": 3}}).json()
    return api, ds, job


def test_sigkill_mid_job_resumes_from_checkpoint_on_another_worker(own_stack, tmp_path):
    s = own_stack
    epochs = 12
    api, ds, job = long_job(s, tmp_path, rows=2000, epochs=epochs)

    # Wait until a few epochs are checkpointed, then kill the worker's whole process group.
    def mid_job():
        j = api.get(s.url(f"/api/jobs/{job['id']}/")).json()
        return j["status"] == "running" and j["epoch"] >= 3
    wait_for(mid_job, 120, "job to pass epoch 3")
    s.stop("worker", sig=signal.SIGKILL)
    killed_at = api.get(s.url(f"/api/jobs/{job['id']}/")).json()
    assert killed_at["status"] == "running" and killed_at["epoch"] < epochs

    s.start_worker("worker2", queues="train,ingest")
    done = s.wait_job(api, job["id"], timeout=240)
    assert done["status"] == "succeeded", s.logs()
    assert done["attempts"] == 2 and done["worker"].startswith("worker2@")
    assert sorted(a["name"] for a in done["artifacts"]) == ["MODEL_CARD.md", "config.json", "model.safetensors"]
    assert done["metrics"]["accuracy"] >= 0.9

    events = api.get(s.url(f"/api/jobs/{job['id']}/events/")).json()["events"]
    assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))  # no gap, no duplicate
    logs = " | ".join(e["text"] for e in events if e["kind"] == "log")
    assert "stopped responding; job requeued" in logs and "resumed from the checkpoint after epoch" in logs
    val = [e for e in events if e["kind"] == "metric" and e["split"] == "val"]
    assert [round(e["epoch"]) for e in val] == list(range(1, epochs + 1))  # each epoch charted once
    train_steps = [e["step"] for e in events if e["kind"] == "metric" and e["split"] == "train"]
    assert train_steps == sorted(set(train_steps))  # the replayed part is not charted twice
    statuses = [e["status"] for e in events if e["kind"] == "status"]
    assert statuses == ["queued", "running", "queued", "running", "succeeded"]
    lost = [e for e in events if e["kind"] == "status" and e.get("lost")]
    assert len(lost) == 1 and lost[0]["lost"].startswith("worker@")  # marked lost, then requeued
    confusions = [e["epoch"] for e in events if e["kind"] == "confusion"]
    assert confusions == sorted(set(confusions))  # nor the confusion matrices and samples
    assert [e["epoch"] for e in events if e["kind"] == "samples"] == sorted(confusions)

    # The same job without the crash ends with the same metrics (CPU training is deterministic).
    twin = api.post(s.url("/api/jobs/"), json={
        "dataset": ds["id"], "architecture": "mlp",
        "train_config": {"epochs": epochs, "batch_size": 2, "learning_rate": 0.001, "seed": 3}}).json()
    twin = s.wait_job(api, twin["id"], timeout=240)
    for key in ("loss", "accuracy", "f1"):
        assert done["metrics"][key] == pytest.approx(twin["metrics"][key], abs=1e-4), key


@pytest.mark.parametrize("whom", ["main process", "process group"])
def test_sigterm_requeues_the_running_job_and_it_resumes_elsewhere(own_stack, tmp_path, whom):
    """Warm shutdown (F8): SIGTERM to the worker (systemd sends it to the main process with
    KillMode=mixed, to every process by default) stops the job at its next step, hands it back
    to the queue without counting an attempt, and the worker exits; another worker resumes it."""
    s = own_stack
    epochs = 10
    api, _, job = long_job(s, tmp_path, rows=1000, epochs=epochs)
    wait_for(lambda: api.get(s.url(f"/api/jobs/{job['id']}/")).json()["epoch"] >= 2, 120, "job to pass epoch 2")

    proc = s.procs.pop("worker")
    if whom == "main process":
        os.kill(proc.pid, signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)  # it exits by itself: the job stopped at a step instead of running on
    stopped = api.get(s.url(f"/api/jobs/{job['id']}/")).json()
    assert stopped["status"] == "queued" and stopped["attempts"] == 0 and stopped["epoch"] < epochs, stopped

    s.start_worker("worker2", queues="train,ingest")
    done = s.wait_job(api, job["id"], timeout=240)
    assert done["status"] == "succeeded", s.logs()
    assert done["attempts"] == 1 and done["worker"].startswith("worker2@")
    events = api.get(s.url(f"/api/jobs/{job['id']}/events/")).json()["events"]
    assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))
    logs = " | ".join(e["text"] for e in events if e["kind"] == "log")
    assert "handed the job back to the queue" in logs and "resumed from the checkpoint after epoch" in logs
    assert [e["status"] for e in events if e["kind"] == "status"] == [
        "queued", "running", "queued", "running", "succeeded"]
    val = [e for e in events if e["kind"] == "metric" and e["split"] == "val"]
    assert [round(e["epoch"]) for e in val] == list(range(1, epochs + 1))
    out = s.manage("shell", "-c", "from webapp.cluster.models import Worker; "
                   "print(sorted((w.name.split('@')[0], w.status) for w in Worker.objects.all()))").stdout
    assert "('worker', 'offline')" in out and "('worker2', 'online')" in out, out


def test_a_job_whose_worker_is_lost_past_the_attempt_limit_fails_with_the_reason(tmp_path):
    """TRAINYARD_MAX_ATTEMPTS=1: the first SIGKILL uses the job's only run, so the surviving
    worker marks it lost and failed (with the reason) instead of restarting it."""
    env = {"TRAINYARD_JOB_LEASE_SECONDS": "4", "TRAINYARD_HEARTBEAT_SECONDS": "1", "TRAINYARD_MAX_ATTEMPTS": "1"}
    with running_stack(env=env) as s:
        api, _, job = long_job(s, tmp_path, rows=1000, epochs=10)
        wait_for(lambda: api.get(s.url(f"/api/jobs/{job['id']}/")).json()["epoch"] >= 1, 120, "epoch 1")
        s.stop("worker", sig=signal.SIGKILL)
        s.start_worker("worker2", queues="train,ingest")
        done = s.wait_job(api, job["id"], timeout=120)
        assert done["status"] == "failed" and done["attempts"] == 1, done
        assert done["error"].startswith("worker worker@") and "1 attempt used" in done["error"], done["error"]
        assert "TRAINYARD_MAX_ATTEMPTS" in done["error"]
        events = api.get(s.url(f"/api/jobs/{job['id']}/events/")).json()["events"]
        assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))
        statuses = [e for e in events if e["kind"] == "status"]
        assert [e["status"] for e in statuses] == ["queued", "running", "failed"]
        assert statuses[-1]["lost"].startswith("worker@")
        # Each training worker consumes a queue of its own, where the dispatcher sent the job.
        out = s.manage("shell", "-c", "import json; from webapp.cluster.models import Worker; "
                       "print(json.dumps({w.name: w.queues for w in Worker.objects.all()}))").stdout
        queues = {name: q.split(",") for name, q in json.loads(out.strip().splitlines()[-1]).items()}
        trainers = {name: q for name, q in queues.items() if "train" in q}
        assert len(trainers) == 2, queues
        assert all(f"train.{name}" in q for name, q in trainers.items()), queues
        # The notification worker (webhooks) trains nothing and has no queue of its own.
        assert all(not any(x.startswith("train") for x in q) for name, q in queues.items() if name not in trainers)
        # The slot is free again: a new job on the same worker runs to the end.
        again = api.post(s.url("/api/jobs/"), json={"dataset": job["dataset"], "architecture": "mlp",
                                                     "train_config": {"epochs": 1}}).json()
        assert s.wait_job(api, again["id"], timeout=120)["status"] == "succeeded", s.logs()
