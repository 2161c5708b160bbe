"""A sweep through the real stack: 6 trials, 2 at once on two workers, one worker SIGKILLed
mid-trial. Its trial's job is requeued by the lease watchdog and resumed on the other worker
as the same trial: every trial ends once, and the sweep ends."""

from __future__ import annotations

import signal
import time

import pytest

from tests.stack import running_stack, wait_for, write_separable_csv

pytestmark = [pytest.mark.stack, pytest.mark.postgres]

FINAL = ("succeeded", "failed", "cancelled")


def test_sweep_of_six_trials_survives_a_lost_worker(tmp_path):
    env = {"TRAINYARD_JOB_LEASE_SECONDS": "4", "TRAINYARD_HEARTBEAT_SECONDS": "1"}
    with running_stack(env=env) as s:
        s.start_worker("worker2", queues="train,ingest")
        api = s.api("alice")
        with open(write_separable_csv(tmp_path / "d.csv", n=1200), "rb") as f:
            ds = api.post(s.url("/api/datasets/"), files={"file": ("d.csv", f)}).json()
        s.wait_dataset(api, ds["id"])
        started = time.monotonic()
        r = api.post(s.url("/api/sweeps/"), json={
            "dataset": ds["id"], "architecture": "mlp", "metric": "loss", "budget": 6, "concurrency": 2, "seed": 3,
            "pruner": "median", "train_config": {"epochs": 5, "batch_size": 4},
            "space": {"train.learning_rate": {"type": "float", "low": 1e-4, "high": 0.05, "log": True}}})
        assert r.status_code == 201, r.text
        sweep = r.json()
        assert len(sweep["trials"]) == 2

        def sweep_now():
            return api.get(s.url(f"/api/sweeps/{sweep['id']}/")).json()

        # Kill the first worker while it runs a trial past its first checkpoint.
        def victim():
            for t in sweep_now()["trials"]:
                j = api.get(s.url(f"/api/jobs/{t['job']}/")).json()
                if j["status"] == "running" and j["worker"].startswith("worker@") and j["epoch"] >= 1:
                    return j
            return None
        wait_for(lambda: victim() is not None, 120, "a trial running on worker past epoch 1")
        killed = victim()
        s.stop("worker", sig=signal.SIGKILL)

        wait_for(lambda: sweep_now()["status"] != "running", 400, "the sweep to end")
        done = sweep_now()
        elapsed = time.monotonic() - started
        assert done["status"] == "succeeded", (done, s.logs())
        trials = done["trials"]
        assert [t["number"] for t in trials] == list(range(6))
        assert len({t["job"] for t in trials}) == 6  # one job per trial
        assert all(t["state"] in ("complete", "pruned") for t in trials), trials
        jobs = api.get(s.url("/api/jobs/")).json()["jobs"]
        assert len(jobs) == 6  # no trial submitted twice
        for t in trials:
            events = api.get(s.url(f"/api/jobs/{t['job']}/events/")).json()["events"]
            finals = [e["status"] for e in events if e["kind"] == "status" and e["status"] in FINAL]
            assert len(finals) == 1, (t, finals)  # every trial's job ended once
            job = next(j for j in jobs if j["id"] == t["job"])
            if t["state"] == "complete":
                assert job["status"] == "succeeded" and t["value"] == pytest.approx(job["metrics"]["loss"])
            else:
                assert job["status"] == "cancelled" and "pruned by sweep" in job["error"]
        lost = next(j for j in jobs if j["id"] == killed["id"])
        lost_events = api.get(s.url(f"/api/jobs/{lost['id']}/events/")).json()["events"]
        assert any(e["kind"] == "status" and e.get("lost") for e in lost_events)
        lost_trial = next(t for t in trials if t["job"] == lost["id"])
        if lost_trial["state"] == "complete":  # resumed and finished on the other worker
            assert lost["attempts"] == 2 and lost["worker"].startswith("worker2@"), lost
        print(f"sweep of 6 trials, 2 at once, one worker lost: {elapsed:.0f} s; states "
              f"{[t['state'] for t in trials]}; best {done['best']['value']:.4f}")
