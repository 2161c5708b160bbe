"""F10, a chaos run: jobs of two users train on two workers while workers are SIGKILLed and
restarted, paused past their lease (SIGSTOP, then SIGCONT: split brain, issue 14) and Redis
restarts, at seeded random moments; on SQLite and, with DATABASE_URL, PostgreSQL. Afterwards every job has reached a final
state, every worker slot is free, no event number is missing, and no job used more attempts
than allowed."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.stack import running_stack, wait_for, write_separable_csv

pytestmark = [pytest.mark.stack, pytest.mark.postgres]

FINAL = ("succeeded", "failed", "cancelled")
MAX_ATTEMPTS = 8


def test_chaos_every_job_ends_and_nothing_is_lost(tmp_path):
    env = {"TRAINYARD_JOB_LEASE_SECONDS": "4", "TRAINYARD_HEARTBEAT_SECONDS": "1",
           "TRAINYARD_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}
    with running_stack(env=env) as s:
        s.start_worker("worker2", queues="train")
        alice, bob = s.api("alice"), s.api("bob")
        with open(write_separable_csv(tmp_path / "d.csv", n=800), "rb") as f:
            ds = alice.post(s.url("/api/datasets/"), files={"file": ("d.csv", f)}).json()
        s.wait_dataset(alice, ds["id"])
        alice.post(s.url(f"/api/datasets/{ds['id']}/share/"), json={"username": "bob", "action": "add"})
        jobs = {}
        for i in range(4):
            api = (alice, bob)[i % 2]
            j = api.post(s.url("/api/jobs/"), json={
                "dataset": ds["id"], "architecture": "mlp", "name": f"chaos-{i}",
                "train_config": {"epochs": 6, "batch_size": 4, "seed": i}}).json()
            jobs[j["id"]] = api

        rnd = random.Random(10)
        actions = []
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            time.sleep(rnd.uniform(3, 6))
            states = [api.get(s.url(f"/api/jobs/{jid}/")).json()["status"] for jid, api in jobs.items()]
            if all(st in FINAL for st in states):
                break
            action = rnd.choice(["kill worker", "kill worker2", "pause worker", "pause worker2", "restart redis"])
            actions.append(action)
            if action == "restart redis":
                s.stop("redis")
                time.sleep(rnd.uniform(0.2, 2))
                s.start_redis()
            elif action.startswith("pause"):
                # Past the lease: another worker may claim its job; resumed, the paused run is fenced.
                pid = s.procs[action.split()[1]].pid
                os.killpg(pid, signal.SIGSTOP)
                time.sleep(rnd.uniform(5, 7))
                os.killpg(pid, signal.SIGCONT)
            else:
                name = action.split()[1]
                s.stop(name, sig=signal.SIGKILL)
                time.sleep(rnd.uniform(0.2, 2))
                s.start_worker(name, queues="train,ingest,infer" if name == "worker" else "train")
        print("chaos:", ", ".join(actions))
        assert actions, "the jobs ended before any fault was injected"

        def all_final():
            return all(api.get(s.url(f"/api/jobs/{jid}/")).json()["status"] in FINAL for jid, api in jobs.items())
        wait_for(all_final, 600, "every job to end", interval=1)
        for jid, api in jobs.items():
            done = api.get(s.url(f"/api/jobs/{jid}/")).json()
            assert done["status"] == "succeeded", (done["name"], done["status"], done["error"], actions)
            assert done["attempts"] <= MAX_ATTEMPTS
            events = api.get(s.url(f"/api/jobs/{jid}/events/")).json()["events"]
            assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1)), done["name"]
            assert events[-1]["kind"] == "status" and events[-1]["status"] == "succeeded"
            statuses = [e["status"] for e in events if e["kind"] == "status"]
            assert statuses.count("succeeded") == 1, (done["name"], statuses, actions)  # one end, one notification
            val = [round(e["epoch"]) for e in events if e["kind"] == "metric" and e["split"] == "val"]
            assert val == list(range(1, 7)), (done["name"], val)  # each epoch charted once
        # Every worker slot is free again: no worker holds a job, no job is running.
        out = s.manage("shell", "-c", "from webapp.cluster.models import Worker; from webapp.jobs.models import Job; "
                       "print(Worker.objects.exclude(current_job=None).count(), "
                       "Job.objects.filter(status='running').count())").stdout.split()
        assert out[-2:] == ["0", "0"], out
