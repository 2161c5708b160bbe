"""Redis restarted while a job trains: the job still completes and no event is lost."""

from __future__ import annotations

import pytest

from tests.stack import running_stack, wait_for, write_separable_csv

pytestmark = pytest.mark.stack


def test_redis_restart_mid_job(tmp_path):
    with running_stack(env={"TRAINYARD_JOB_LEASE_SECONDS": "6", "TRAINYARD_HEARTBEAT_SECONDS": "1"}) as s:
        api = s.api("alice")
        with open(write_separable_csv(tmp_path / "d.csv", n=1000), "rb") as f:
            ds = api.post(s.url("/api/datasets/"), files={"file": ("d.csv", f)}).json()
        s.wait_dataset(api, ds["id"])
        job = api.post(s.url("/api/jobs/"), json={
            "dataset": ds["id"], "architecture": "mlp",
            "train_config": {"epochs": 10, "batch_size": 2, "seed": 1}}).json()
        wait_for(lambda: api.get(s.url(f"/api/jobs/{job['id']}/")).json()["epoch"] >= 2, 120, "epoch 2")
        s.stop("redis")
        s.start_redis()  # same port, its append-only file: queued messages survive
        done = s.wait_job(api, job["id"], timeout=240)
        assert done["status"] == "succeeded", s.logs()
        print(f"attempts after the Redis restart: {done['attempts']}")
        events = api.get(s.url(f"/api/jobs/{job['id']}/events/")).json()["events"]
        assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))
        val_epochs = [round(e["epoch"]) for e in events if e["kind"] == "metric" and e["split"] == "val"]
        assert val_epochs == list(range(1, 11))
        # The stack still works afterwards: a new job runs.
        again = api.post(s.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp",
                                                     "train_config": {"epochs": 1}}).json()
        assert s.wait_job(api, again["id"], timeout=120)["status"] == "succeeded", s.logs()
