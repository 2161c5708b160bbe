"""On the real stack: a running CPU job appears on its worker in the cluster page's JSON (by name
for its owner, as "another user's job" for anyone else) and gets resource samples from the
worker's heartbeat with plausible values, in the job's API history."""

from __future__ import annotations

import time

import pytest

from tests.integration.helpers import login
from tests.stack import PASSWORD, write_separable_csv

pytestmark = pytest.mark.stack


def test_running_job_on_its_worker_and_its_resource_samples(stack, tmp_path):
    api = stack.api("alice")
    path = write_separable_csv(tmp_path / "res.csv")
    with open(path, "rb") as f:
        r = api.post(stack.url("/api/datasets/"), files={"file": ("res.csv", f, "text/csv")}, data={"name": "res"})
    ds = stack.wait_dataset(api, r.json()["id"])
    job_id = api.post(stack.url("/api/jobs/"), json={
        "dataset": ds["id"], "name": "alices-resource-job", "architecture": "mlp",
        "train_config": {"epochs": 10000, "batch_size": 1}}).json()["id"]
    job = stack.wait_job(api, job_id, statuses=("running",))
    try:
        alice, bob = login(stack, "alice", PASSWORD), login(stack, "bob", PASSWORD)
        mine = alice.get(stack.url("/cluster/state/")).json()
        workers = {w["name"]: w for h in mine["hosts"] for w in h["workers"]}
        assert workers[job["worker"]]["job"]["name"] == "alices-resource-job"
        assert workers[job["worker"]]["state"] == "busy" and workers[job["worker"]]["alive"]
        theirs = bob.get(stack.url("/cluster/state/"))
        assert "alices-resource-job" not in theirs.text and job_id not in theirs.text
        other = {w["name"]: w for h in theirs.json()["hosts"] for w in h["workers"]}[job["worker"]]["job"]
        other.pop("usage")  # the latest resource sample, if any (no setting of the job)
        assert other == {"status": "running", "devices": 1, "mine": False, "visible": False,
                         "label": "another user's job"}

        # Heartbeats every 2 s in the test stack: wait for three samples.
        deadline = time.monotonic() + 60
        samples = []
        while time.monotonic() < deadline and len(samples) < 3:
            time.sleep(1)
            events = api.get(stack.url(f"/api/jobs/{job_id}/events/?history=1")).json()["events"]
            samples = [e for e in events if e["kind"] == "resources"]
        assert len(samples) >= 3, samples
        for s in samples:
            assert s["rss"] > 50_000_000  # a pool process with torch loaded
            assert s["processes"] >= 1 and s["cpus"] >= 1
            assert 0 <= s["cpu_percent"] <= 100 * s["cpus"] + 10
        assert max(s["cpu_percent"] for s in samples[1:]) > 5  # a training loop is busy
        assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
        # The same samples come live on the event stream and to another user never.
        assert bob.get(stack.url(f"/api/jobs/{job_id}/events/")).status_code in (403, 404)
    finally:
        api.post(stack.url(f"/api/jobs/{job_id}/cancel/"))
        stack.wait_job(api, job_id, timeout=60)
