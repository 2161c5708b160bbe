"""Multi-device jobs on the real stack (CPU workers declaring 2 gloo devices each): a 2-rank job
trains the weights one process trains, two such jobs share a host without a port clash, a
SIGKILLed rank requeues the job (attempt counted) which resumes and leaves no process behind,
and a cancel stops every rank within seconds."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.stack import running_stack, wait_for, write_separable_csv

pytestmark = pytest.mark.stack

TOLERANCE = 1e-5  # as tests/workers/test_ddp.py: float32 summation order only


@pytest.fixture(scope="module")
def ddp_stack():
    env = {"TRAINYARD_WORKER_DEVICES": "2", "TRAINYARD_JOB_LEASE_SECONDS": "6", "TRAINYARD_HEARTBEAT_SECONDS": "1",
           "TRAINYARD_DDP_TIMEOUT_SECONDS": "20"}
    with running_stack(env=env) as s:
        yield s


@pytest.fixture(scope="module")
def dataset(ddp_stack, tmp_path_factory):
    s = ddp_stack
    api = s.api("alice")
    with open(write_separable_csv(tmp_path_factory.mktemp("ddp") / "d.csv", n=600), "rb") as f:
        ds = api.post(s.url("/api/datasets/"), files={"file": ("d.csv", f)}).json()
    s.wait_dataset(api, ds["id"])
    return ds["id"]


def submit(s, dataset, **train):
    api = s.api("alice")
    r = api.post(s.url("/api/jobs/"), json={"dataset": dataset, "architecture": "mlp", "train_config": {
        "epochs": 3, "batch_size": 16, "learning_rate": 0.003, "seed": 5, **train}})
    assert r.status_code == 201, r.text
    return r.json()


def rank_processes(job_id: str) -> dict[int, int]:
    """{rank: pid} of the live processes of a job (their command line names the job's folder):
    its ranks, and torchrun as rank -1."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            if "workers.adapters.ddp_rank" in cmd and job_id in cmd:
                env = dict(kv.split("=", 1) for kv in (d / "environ").read_bytes().decode(errors="replace")
                           .split("\0") if "=" in kv)
                out[int(env.get("RANK", -1))] = int(d.name)
        except OSError:
            continue
    return out


def weights(s, job_id):
    from safetensors.torch import load_file

    return load_file(str(s.data_dir / "jobs" / job_id / "artifacts" / "model.safetensors"))


def test_a_two_rank_job_trains_the_weights_of_one_process(ddp_stack, dataset):
    s = ddp_stack
    api = s.api("alice")
    r = api.post(s.url("/api/jobs/"), json={"dataset": dataset, "architecture": "mlp", "train_config": {"gpus": 3}})
    assert r.status_code == 400 and "the largest online has 2" in r.json()["errors"]["train_config.gpus"], r.text
    ddp, one = submit(s, dataset, gpus=2), submit(s, dataset, gpus=1)
    ddp, one = s.wait_job(api, ddp["id"], timeout=300), s.wait_job(api, one["id"], timeout=300)
    assert ddp["status"] == "succeeded" and one["status"] == "succeeded", (ddp, s.logs()[-5000:])
    a, b = weights(s, ddp["id"]), weights(s, one["id"])
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"\n2 ranks vs one process: max |weight difference| {diff:.2e}")
    assert diff < TOLERANCE, diff
    assert ddp["metrics"]["accuracy"] == pytest.approx(one["metrics"]["accuracy"], abs=1e-6)
    events = api.get(s.url(f"/api/jobs/{ddp['id']}/events/")).json()["events"]
    assert [e["seq"] for e in events] == list(range(1, ddp["last_seq"] + 1))
    assert [round(e["epoch"]) for e in events if e["kind"] == "metric" and e["split"] == "val"] == [1, 2, 3]
    logs = " | ".join(e["text"] for e in events if e["kind"] == "log")
    assert "data-parallel (DDP, gloo) over 2 ranks" in logs
    assert not rank_processes(ddp["id"])
    assert not list((s.data_dir / "jobs" / ddp["id"]).glob(".ddp-*"))  # the run's folder is removed


def test_two_two_rank_jobs_on_one_host_at_once(ddp_stack, dataset):
    s = ddp_stack
    api = s.api("alice")
    if "worker2" not in s.procs:
        s.start_worker("worker2", queues="train")
    jobs = [submit(s, dataset, gpus=2, epochs=4), submit(s, dataset, gpus=2, epochs=4)]
    wait_for(lambda: all(api.get(s.url(f"/api/jobs/{j['id']}/")).json()["status"] == "running" for j in jobs),
             120, "both jobs running")
    done = [s.wait_job(api, j["id"], timeout=300) for j in jobs]
    # Both ran at the same time (one host, two torchrun rendezvous ports).
    spans = [(d["started_at"], d["finished_at"]) for d in done]
    assert max(a for a, _ in spans) < min(b for _, b in spans), spans
    assert [d["status"] for d in done] == ["succeeded", "succeeded"], [d["error"] for d in done]
    assert {d["worker"].split("@")[0] for d in done} == {"worker", "worker2"}


def test_sigkill_of_rank_1_requeues_resumes_and_leaves_no_process(ddp_stack, dataset):
    s = ddp_stack
    api = s.api("alice")
    job = submit(s, dataset, gpus=2, epochs=12, batch_size=4)
    wait_for(lambda: api.get(s.url(f"/api/jobs/{job['id']}/")).json()["epoch"] >= 2, 240, "epoch 2")
    ranks = rank_processes(job["id"])
    assert sorted(ranks) == [-1, 0, 1], ranks
    os.kill(ranks[1], signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: not set(rank_processes(job["id"]).values()) & set(ranks.values()), 60, "old ranks gone")
    gone_in = time.monotonic() - killed
    print(f"\nSIGKILL of rank 1: every old process gone {gone_in:.1f} s later")
    assert gone_in < 30  # within the collective timeout (20 s) and torchrun's close
    done = s.wait_job(api, job["id"], timeout=400)
    assert done["status"] == "succeeded" and done["attempts"] == 2, (done, s.logs()[-5000:])
    events = api.get(s.url(f"/api/jobs/{job['id']}/events/")).json()["events"]
    assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))
    logs = " | ".join(e["text"] for e in events if e["kind"] == "log")
    assert "rank 1 of 2 died" in logs and "resumed from the checkpoint after epoch" in logs, logs[-3000:]
    assert [e["status"] for e in events if e["kind"] == "status"] == ["queued", "running", "queued", "running",
                                                                      "succeeded"]
    val = [round(e["epoch"]) for e in events if e["kind"] == "metric" and e["split"] == "val"]
    assert val == list(range(1, 13))
    assert not rank_processes(job["id"])


def test_cancel_stops_every_rank_within_seconds(ddp_stack, dataset):
    s = ddp_stack
    api = s.api("alice")
    job = submit(s, dataset, gpus=2, epochs=200, batch_size=4)
    wait_for(lambda: len(rank_processes(job["id"])) == 3 and api.get(s.url(f"/api/jobs/{job['id']}/")).json()[
        "step"] > 5, 240, "job training")
    asked = time.monotonic()
    assert api.post(s.url(f"/api/jobs/{job['id']}/cancel/")).status_code in (200, 202)
    wait_for(lambda: not rank_processes(job["id"]), 30, "ranks to stop", interval=0.05)
    stopped_in = time.monotonic() - asked
    print(f"\ncancel: every rank gone {stopped_in:.1f} s after the request")
    done = s.wait_job(api, job["id"], timeout=60)
    assert done["status"] == "cancelled" and stopped_in < 10, (stopped_in, done)  # a few s; this VM is shared
