"""Job ownership on the real stack (issue 14, items 1-4): a worker paused past its lease (SIGSTOP)
and woken (SIGCONT) writes nothing for the job it lost; a worker is never left "busy" by a run
whose end it could not record; a worker with a skewed clock takes no healthy job; a database
connection dropped during a job does not lose its end."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.test_worker_loss import long_job
from tests.stack import running_stack, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.postgres]

FAST = {"TRAINYARD_JOB_LEASE_SECONDS": "4", "TRAINYARD_HEARTBEAT_SECONDS": "1"}


def get(s, api, job_id) -> dict:
    return api.get(s.url(f"/api/jobs/{job_id}/")).json()


def events_of(s, api, job_id) -> list[dict]:
    return api.get(s.url(f"/api/jobs/{job_id}/events/")).json()["events"]


def worker_of(job: dict) -> str:
    return job["worker"].split("@")[0]


def log_count(s, name: str, text: str) -> int:
    return (s.tmp / f"{name}.log").read_text(errors="replace").count(text)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


DISCARDED = "lost the job; its output is discarded"


def pause_until_taken_over(s, api, job_id) -> tuple[str, str]:
    """SIGSTOP the worker running the job until the job runs on the other one, and that run has
    checkpointed an epoch; returns (paused, live) worker names. The paused one is still stopped."""
    job = get(s, api, job_id)
    paused = worker_of(job)
    os.killpg(s.procs[paused].pid, signal.SIGSTOP)
    wait_for(lambda: (j := get(s, api, job_id))["status"] == "running" and worker_of(j) != paused,
             90, "the job to move to the other worker", interval=0.3)
    moved = get(s, api, job_id)
    return paused, worker_of(moved)


def test_a_paused_worker_that_wakes_after_its_lease_writes_nothing_for_the_lost_job(tmp_path):
    with running_stack(env=FAST) as s:
        s.start_worker("worker2", queues="train")
        epochs = 10
        api, ds, job = long_job(s, tmp_path, rows=1000, epochs=epochs)
        wait_for(lambda: get(s, api, job["id"])["epoch"] >= 2, 180, "epoch 2", interval=0.3)
        paused, live = pause_until_taken_over(s, api, job["id"])
        at_takeover = get(s, api, job["id"])["epoch"]
        wait_for(lambda: get(s, api, job["id"])["epoch"] > at_takeover, 120, "the live run's next epoch",
                 interval=0.3)
        os.killpg(s.procs[paused].pid, signal.SIGCONT)  # the stale run wakes up, mid-epoch
        wait_for(lambda: log_count(s, paused, DISCARDED) == 1, 60, "the stale run to stop", interval=0.3)

        done = s.wait_job(api, job["id"], timeout=300)
        assert done["status"] == "succeeded", s.logs()
        assert done["attempts"] == 2 and worker_of(done) == live, done
        folder = s.data_dir / "jobs" / job["id"]
        on_disk = {a["name"]: sha256(folder / "artifacts" / a["name"]) for a in done["artifacts"]}
        time.sleep(3)  # anything the stale run still had in flight would land now
        events = events_of(s, api, job["id"])
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        statuses = [e["status"] for e in events if e["kind"] == "status"]
        assert statuses == ["queued", "running", "queued", "running", "succeeded"], statuses
        metrics = [(e["split"], e["step"]) for e in events if e["kind"] == "metric"]
        assert len(metrics) == len(set(metrics)), "a metric point was stored twice"
        train_steps = [step for split, step in metrics if split == "train"]
        assert train_steps == sorted(train_steps), "metric steps went backwards"
        assert [round(e["epoch"]) for e in events if e["kind"] == "metric" and e["split"] == "val"] == \
            list(range(1, epochs + 1))
        assert [e["epoch"] for e in events if e["kind"] == "confusion"] == list(range(1, epochs + 1))
        # The files are the live run's: their hashes are the ones recorded at its finish, and
        # nothing of the stale run (its attempt-private temp files) is left behind.
        after = get(s, api, job["id"])
        assert after["status"] == "succeeded" and worker_of(after) == live
        assert {a["name"]: a["sha256"] for a in after["artifacts"]} == on_disk
        assert {a["name"]: sha256(folder / "artifacts" / a["name"]) for a in after["artifacts"]} == on_disk
        assert not [p.name for p in folder.rglob(".*.tmp")]

        # A job deleted while its stale run sleeps: its folder stays deleted when that run wakes.
        other = api.post(s.url("/api/jobs/"), json={
            "dataset": ds["id"], "architecture": "mlp",
            "train_config": {"epochs": 8, "batch_size": 2, "learning_rate": 0.001, "seed": 4}}).json()
        wait_for(lambda: get(s, api, other["id"])["epoch"] >= 1, 180, "the second job's epoch 1", interval=0.3)
        paused, _ = pause_until_taken_over(s, api, other["id"])
        api.post(s.url(f"/api/jobs/{other['id']}/cancel/"))
        s.wait_job(api, other["id"], statuses=("cancelled",), timeout=120)
        assert api.delete(s.url(f"/api/jobs/{other['id']}/")).status_code in (200, 204)
        folder = s.data_dir / "jobs" / other["id"]
        assert not folder.exists()
        before = log_count(s, paused, DISCARDED)
        os.killpg(s.procs[paused].pid, signal.SIGCONT)
        wait_for(lambda: log_count(s, paused, DISCARDED) > before, 60, "the stale run to stop", interval=0.3)
        time.sleep(2)
        assert not folder.exists(), sorted(str(p) for p in folder.rglob("*"))
        # Both workers take jobs again: two at once run side by side.
        more = [api.post(s.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp",
                                                    "train_config": {"epochs": 1, "seed": i}}).json()
                for i in range(2)]
        ends = [s.wait_job(api, j["id"], timeout=180) for j in more]
        assert [e["status"] for e in ends] == ["succeeded", "succeeded"], s.logs()
        assert {worker_of(e) for e in ends} == {"worker", "worker2"}


def pool_process(s, name: str) -> int:
    """The pid of the Celery worker's (one) pool process: the child of its main process."""
    main = s.procs[name].pid
    children = open(f"/proc/{main}/task/{main}/children").read().split()
    assert len(children) == 1, children
    return int(children[0])


def test_a_worker_is_not_left_busy_after_a_job_fails_on_its_last_attempt(tmp_path):
    """The pool process dies mid-job (its run never records its end) and the job, out of
    attempts, fails: the worker that stays up takes the next job."""
    with running_stack(env={**FAST, "TRAINYARD_MAX_ATTEMPTS": "1"}) as s:
        api, ds, job = long_job(s, tmp_path, rows=1000, epochs=10)
        wait_for(lambda: get(s, api, job["id"])["epoch"] >= 1, 180, "epoch 1", interval=0.3)
        os.kill(pool_process(s, "worker"), signal.SIGKILL)
        failed = s.wait_job(api, job["id"], timeout=120)
        assert failed["status"] == "failed" and failed["attempts"] == 1, failed
        nxt = api.post(s.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp",
                                                  "train_config": {"epochs": 1}}).json()
        done = s.wait_job(api, nxt["id"], timeout=120)  # on main it waited "for a free worker" forever
        assert done["status"] == "succeeded" and worker_of(done) == "worker", (done, s.logs())


def test_a_database_connection_dropped_during_a_job_does_not_lose_its_end(tmp_path):
    """pg_terminate_backend of every connection of the stack's database mid-job: the reporter and
    the task's end reconnect; the job succeeds on its first attempt and the worker is free."""
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        pytest.skip("needs PostgreSQL (DATABASE_URL): SQLite has no server connection to drop")
    import psycopg

    with running_stack(env=FAST) as s:
        api, ds, job = long_job(s, tmp_path, rows=800, epochs=6)
        wait_for(lambda: get(s, api, job["id"])["epoch"] >= 2, 180, "epoch 2", interval=0.3)
        with psycopg.connect(s.database_url, autocommit=True) as conn:
            killed = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
        assert killed >= 2  # at least the worker's task and its reporter
        done = s.wait_job(api, job["id"], timeout=180)
        assert done["status"] == "succeeded" and done["attempts"] == 1, (done, s.logs())
        statuses = [e["status"] for e in events_of(s, api, job["id"]) if e["kind"] == "status"]
        assert statuses == ["queued", "running", "succeeded"], statuses
        nxt = api.post(s.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp",
                                                  "train_config": {"epochs": 1}}).json()
        assert s.wait_job(api, nxt["id"], timeout=120)["status"] == "succeeded", s.logs()


def test_an_ingest_worker_whose_clock_runs_ahead_takes_no_healthy_job(tmp_path):
    """Debian's faketime puts an ingest worker's clock 30 s ahead (lease 4 s): the job trains on,
    on its first attempt, never marked lost."""
    if shutil.which("faketime") is None:
        pytest.skip("needs faketime (apt-get install faketime)")
    skewed = subprocess.run(["faketime", "-f", "+30s", sys.executable, "-c", "import time; print(time.time())"],
                            capture_output=True, text=True, check=True)
    assert float(skewed.stdout) - time.time() > 25  # the skew is real
    with running_stack(env=FAST) as s:
        # Only the wall clock runs ahead (what differs between machines). A faked monotonic clock
        # would also stretch each of the worker's timed waits by the offset: its first heartbeat
        # would come after the job had ended, and the test would pass on code that trusts the
        # worker's clock (it did, before FAKETIME_DONT_FAKE_MONOTONIC).
        s._spawn("skewed", ["env", "FAKETIME_DONT_FAKE_MONOTONIC=1", "faketime", "-f", "+30s", sys.executable, "-m", "celery", "-A", "workers.adapters.worker",
                            "worker", "-Q", "ingest,infer", "--concurrency", "1", "-n", "skewed@%h",
                            "--loglevel", "INFO", "--without-mingle", "--without-gossip"])
        wait_for(lambda: b" ready." in (s.tmp / "skewed.log").read_bytes(), 60, "the skewed worker")
        api, _, job = long_job(s, tmp_path, rows=800, epochs=6)
        done = s.wait_job(api, job["id"], timeout=240)
        assert done["status"] == "succeeded" and done["attempts"] == 1, (done, s.logs())
        events = events_of(s, api, job["id"])
        assert [e["status"] for e in events if e["kind"] == "status"] == ["queued", "running", "succeeded"]
        assert not [e for e in events if e["kind"] == "log" and "stopped responding" in e["text"]]
        assert "heartbeat failed" not in (s.tmp / "skewed.log").read_text(errors="replace")
