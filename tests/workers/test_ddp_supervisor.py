"""How the supervising task of a multi-device job (workers/adapters/ddp.py) reads the end of its
ranks: rank 0's result, a rank's own error (failed), a rank killed outright (requeued with the
attempt counted, failed once out of attempts), and a run that lost its job (fenced)."""

from __future__ import annotations

import json

import pytest

from tests.webapp.factories import ready_dataset
from webapp.cluster.models import Worker
from webapp.jobs import lifecycle
from webapp.jobs.models import Job, JobEvent
from workers.adapters import ddp
from workers.adapters.ddp_rank import peer_lost


@pytest.fixture
def start(alice):
    Worker.objects.create(name="w@h", hostname="h", queues="train", device="cpu", devices=2)
    job = Job.objects.create(owner=alice, dataset=ready_dataset(alice), name="j", architecture="mlp",
                             model_config={"hidden_sizes": [4]}, train_config={"epochs": 1, "gpus": 2})
    return lifecycle.start_run(job.pk, "w@h")


def _error(run_dir, rank, text, lost):
    (run_dir / f"rank-{rank}.error").write_text(json.dumps({"rank": rank, "error": text, "peer_lost": lost}))


def test_a_killed_rank_requeues_the_job_with_the_attempt_counted(start, tmp_path):
    _error(tmp_path, 0, "DistBackendError: Connection closed by peer", True)  # rank 1 wrote nothing: killed
    assert ddp._record_end(start, 2, tmp_path, 1, [], terminated=False) == "requeued"
    job = Job.objects.get(pk=start.job_id)
    assert job.status == Job.Status.QUEUED and job.attempts == 1 and job.worker_name == ""
    texts = list(JobEvent.objects.filter(job=job, kind="log").values_list("data__text", flat=True))
    assert any("rank 1 of 2 died" in t and "requeued" in t for t in texts), texts
    last = JobEvent.objects.filter(job=job, kind="status").order_by("seq").last().data
    assert last["status"] == "queued" and last["lost"] == "w@h"


def test_out_of_attempts_a_lost_rank_fails_the_job_with_the_reason(start, tmp_path, settings):
    settings.TRAINYARD_MAX_ATTEMPTS = 1
    assert ddp._record_end(start, 2, tmp_path, -9, [], terminated=False) == "failed"
    job = Job.objects.get(pk=start.job_id)
    assert job.status == Job.Status.FAILED and "the 2 ranks lost each other" not in job.error
    assert job.error.startswith("rank 0, 1 of 2 died") and "TRAINYARD_MAX_ATTEMPTS" in job.error


def test_a_ranks_own_error_fails_the_job(start, tmp_path):
    _error(tmp_path, 0, "DistBackendError: Connection closed by peer", True)
    _error(tmp_path, 1, "RuntimeError: CUDA out of memory", False)
    assert ddp._record_end(start, 2, tmp_path, 1, [], terminated=False) == "failed"
    assert Job.objects.get(pk=start.job_id).error == "rank 1 of 2: RuntimeError: CUDA out of memory"


def test_rank_0s_result_ends_the_job_and_a_requeue_goes_back_to_the_queue(start, tmp_path):
    (tmp_path / "result.json").write_text(json.dumps({"status": "cancelled", "fenced": False,
                                                      "stop_reason": "requeue"}))
    assert ddp._record_end(start, 2, tmp_path, 0, [], terminated=True) == "requeued"
    job = Job.objects.get(pk=start.job_id)
    assert job.status == Job.Status.QUEUED and job.attempts == 0  # a shutdown counts no attempt


def test_a_fenced_run_records_nothing(start, tmp_path):
    Job.objects.filter(pk=start.job_id).update(owner_token=start.token + 1)  # another run took it
    (tmp_path / "result.json").write_text(json.dumps({"status": None, "fenced": True}))
    assert ddp._record_end(start, 2, tmp_path, 0, [], terminated=False) == "fenced"
    assert lifecycle.requeue_lost_gang(start, "rank 1 of 2 died") == "fenced"
    assert Job.objects.get(pk=start.job_id).status == Job.Status.RUNNING


def test_peer_loss_is_told_from_a_ranks_own_error():
    assert peer_lost(RuntimeError("[../third_party/gloo/transport/tcp/pair.cc:534] Connection closed by peer"))
    assert not peer_lost(ValueError("the training text has 3 tokens"))


def test_the_command_and_the_ranks_environment():
    cmd = ddp.command(2, "/x/spec.json")
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"] and "--nproc-per-node=2" in cmd
    assert cmd[-3:] == ["-m", "workers.adapters.ddp_rank", "/x/spec.json"]
    env = ddp.rank_env(2)
    assert int(env["OMP_NUM_THREADS"]) >= 1


def test_a_multi_node_command_meets_at_the_leaders_c10d_endpoint():
    rdzv = ddp.Rendezvous(2, "10.0.0.5:29411", "job-3", False, "10.0.0.6", 90)
    cmd = ddp.command(1, "/x/spec.json", rdzv)
    assert "--standalone" not in cmd and "--nnodes=2" in cmd and "--rdzv-backend=c10d" in cmd
    assert {"--rdzv-endpoint=10.0.0.5:29411", "--rdzv-id=job-3", "--rdzv-conf=is_host=0,join_timeout=90",
            "--local-addr=10.0.0.6", "--nproc-per-node=1"} <= set(cmd)
    assert ddp.rank_env(1, 1)["TRAINYARD_NODE_RANK"] == "1" and "TRAINYARD_NODE_RANK" not in ddp.rank_env(1)


def test_ranks_are_numbered_by_node_so_rank_0_is_on_the_leader(monkeypatch):
    from workers.adapters.ddp_rank import global_rank

    monkeypatch.setenv("RANK", "0")  # torchrun's c10d order put this machine first
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("TRAINYARD_NODE_RANK", "1")
    assert global_rank() == 3 and __import__("os").environ["RANK"] == "3"


@pytest.fixture
def leader(alice):
    for name, host in (("a@h1", "h1"), ("c@h2", "h2")):
        Worker.objects.create(name=name, hostname=host, queues=f"train,train.{name}", device="cpu", devices=1)
    job = Job.objects.create(owner=alice, dataset=ready_dataset(alice), name="j", architecture="mlp",
                             model_config={"hidden_sizes": [4]}, train_config={"epochs": 1, "gpus": 1, "nodes": 2})
    from webapp.jobs.scheduler import dispatch

    dispatch()
    return lifecycle.start_run(job.pk, Job.objects.get(pk=job.pk).worker_name)


def test_machines_that_never_meet_requeue_the_job_with_the_attempt_counted(leader, tmp_path):
    assert ddp._record_end(leader, 1, tmp_path, 1, ["RendezvousTimeoutError"], terminated=False, nodes=2) == "requeued"
    job = Job.objects.get(pk=leader.job_id)
    assert job.status == Job.Status.QUEUED and job.attempts == 1
    texts = list(JobEvent.objects.filter(job=job, kind="log").values_list("data__text", flat=True))
    assert any("the job's 2 machines did not meet within TRAINYARD_RDZV_TIMEOUT_SECONDS" in t
               and "node 1 (worker c@h2) never joined" in t for t in texts), texts


def test_a_follower_machines_rank_error_fails_the_job(leader, tmp_path):
    (tmp_path / "rank-0.pid").write_text("1")
    other = tmp_path / f".ddp-{leader.token}-node1"
    other.mkdir()
    _error(other, 1, "RuntimeError: CUDA out of memory", False)
    start = lifecycle.RunStart(**{**leader.__dict__, "output_dir": str(tmp_path)})
    assert ddp._record_end(start, 1, tmp_path, 1, [], terminated=False, nodes=2) == "failed"
    assert Job.objects.get(pk=leader.job_id).error == "rank 1 of 2: RuntimeError: CUDA out of memory"


def test_a_cancel_before_any_rank_started_stops_torchrun(leader, tmp_path):
    """While the machines meet no rank runs, so none reads the cancel: the lease loop does, kills
    torchrun, and the end is recorded cancelled (not requeued)."""
    import subprocess

    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        Job.objects.filter(pk=leader.job_id).update(cancel_requested=True)
        ddp._beat(leader, proc, tmp_path)  # one beat of the lease loop (its thread)
        assert proc.wait(5) == -9
    finally:
        proc.kill()
    assert ddp._record_end(leader, 1, tmp_path, -9, [], terminated=False, nodes=2) == Job.Status.CANCELLED
    assert Job.objects.get(pk=leader.job_id).status == Job.Status.CANCELLED
