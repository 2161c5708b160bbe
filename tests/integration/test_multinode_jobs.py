"""A multi-node job on the real stack: two Celery workers of this machine registered as two hosts
(TRAINYARD_WORKER_HOSTNAME) train one nodes=2, gpus=1 job together through torchrun's c10d
rendezvous on 127.0.0.1 (the leader's task hosts it, the other's node task joins), and its final
weights are the weights one process trains with the same global batch."""

from __future__ import annotations

import pytest

from tests.integration.test_ddp_jobs import TOLERANCE, rank_processes, weights
from tests.stack import running_stack, write_separable_csv

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def nodes_stack():
    env = {"TRAINYARD_JOB_LEASE_SECONDS": "10", "TRAINYARD_HEARTBEAT_SECONDS": "1",
           "TRAINYARD_DDP_TIMEOUT_SECONDS": "30", "TRAINYARD_RDZV_TIMEOUT_SECONDS": "90",
           "TRAINYARD_WORKER_ADDRESS": "127.0.0.1"}
    with running_stack(env=env) as s:
        for host in ("node-a", "node-b"):
            s.start_worker(host, queues="train", env={"TRAINYARD_WORKER_HOSTNAME": host})
        yield s


def test_two_machines_train_one_job_together(nodes_stack, tmp_path):
    s = nodes_stack
    api = s.api("alice")
    with open(write_separable_csv(tmp_path / "d.csv", n=300), "rb") as f:
        ds = api.post(s.url("/api/datasets/"), files={"file": ("d.csv", f)}).json()
    s.wait_dataset(api, ds["id"])

    def submit(**train):
        r = api.post(s.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp", "train_config": {
            "epochs": 2, "batch_size": 16, "learning_rate": 0.003, "seed": 5, **train}})
        assert r.status_code == 201, r.text
        return r.json()

    r = api.post(s.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp", "train_config": {"nodes": 4}})
    assert r.status_code == 400 and ("the job needs 4 machines of one kind (CPU, or one GPU model) with 1 device "
                                     "each: 3 online have") in r.json()["errors"]["train_config.nodes"], r.text
    gang = submit(nodes=2)
    done = s.wait_job(api, gang["id"], timeout=400)
    assert done["status"] == "succeeded", (done, s.logs()[-8000:])
    one = s.wait_job(api, submit()["id"], timeout=300)
    assert one["status"] == "succeeded", one
    a, b = weights(s, gang["id"]), weights(s, one["id"])
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"\n2 machines × 1 rank vs one process: max |weight difference| {diff:.2e}")
    assert diff < TOLERANCE, diff
    events = api.get(s.url(f"/api/jobs/{gang['id']}/events/")).json()["events"]
    assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))  # one stream, from rank 0
    logs = " | ".join(e["text"] for e in events if e["kind"] == "log")
    assert "data-parallel (DDP, gloo) over 2 ranks" in logs, logs[-2000:]
    assert [e["status"] for e in events if e["kind"] == "status"] == ["queued", "running", "succeeded"]
    assert not rank_processes(gang["id"])
    assert not list((s.data_dir / "jobs" / gang["id"]).glob(".ddp-*"))  # every machine's run folder is removed
    # The gang was two workers on two hosts, and no worker shows a job any more.
    out = s.manage("shell", "-c", GANG_SCRIPT % gang["id"]).stdout
    hosts, holding = out.split("GANG=", 1)[1].strip().splitlines()[0].split(";")
    assert len(set(hosts.split(","))) == 2 and holding == "", out


GANG_SCRIPT = """
from webapp.cluster.models import Worker
from webapp.jobs.models import JobNode
hosts = [Worker.objects.get(name=n).hostname for n in JobNode.objects.filter(job_id=%r).values_list("worker_name", flat=True)]
print("GANG=" + ",".join(hosts) + ";" + ",".join(Worker.objects.exclude(current_job=None).values_list("name", flat=True)))
"""
