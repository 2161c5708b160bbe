"""A worker killed mid-job (SIGKILL): another worker notices the lapsed lease, the job resumes
from its last checkpoint and finishes once, with its event history continuous."""

from __future__ import annotations

import signal

import pytest

from tests.stack import running_stack, wait_for, write_separable_csv

pytestmark = pytest.mark.stack


@pytest.fixture
def own_stack():
    with running_stack(env={"TRAINYARD_JOB_LEASE_SECONDS": "4", "TRAINYARD_HEARTBEAT_SECONDS": "1"}) as s:
        yield s


def test_sigkill_mid_job_resumes_from_checkpoint_on_another_worker(own_stack, tmp_path):
    s = own_stack
    api = s.api("alice")
    with open(write_separable_csv(tmp_path / "d.csv", n=2000), "rb") as f:
        ds = api.post(s.url("/api/datasets/"), files={"file": ("d.csv", f)}).json()
    s.wait_dataset(api, ds["id"])
    epochs = 12
    job = api.post(s.url("/api/jobs/"), json={
        "dataset": ds["id"], "architecture": "mlp",
        "train_config": {"epochs": epochs, "batch_size": 2, "learning_rate": 0.001, "seed": 3}}).json()

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

    # The same job without the crash ends with the same metrics (CPU training is deterministic).
    twin = api.post(s.url("/api/jobs/"), json={
        "dataset": ds["id"], "architecture": "mlp",
        "train_config": {"epochs": epochs, "batch_size": 2, "learning_rate": 0.001, "seed": 3}}).json()
    twin = s.wait_job(api, twin["id"], timeout=240)
    for key in ("loss", "accuracy", "f1"):
        assert done["metrics"][key] == pytest.approx(twin["metrics"][key], abs=1e-4), key
