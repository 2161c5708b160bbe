"""Faults on the real stack (redis-server, Celery worker, uvicorn): the web server restarted under
open websocket clients, and the SQLite database held locked by another connection mid-job."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest

from tests.integration.helpers import login, open_socket
from tests.stack import PASSWORD, running_stack, wait_for, write_separable_csv

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def fstack():
    with running_stack(env={"TRAINYARD_HEARTBEAT_SECONDS": "1"}) as s:
        yield s


def _dataset(s, api, tmp_path):
    with open(write_separable_csv(tmp_path / "d.csv", n=1000), "rb") as f:
        ds = api.post(s.url("/api/datasets/"), files={"file": ("d.csv", f)}).json()
    s.wait_dataset(api, ds["id"])
    return ds


def _collect(ws, seen: dict, until_final: bool, timeout: float = 240) -> None:
    """Read frames into seen (seq -> event) until the job's final status arrives (or one frame)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv(timeout=max(1.0, deadline - time.monotonic())))
        for e in msg.get("events", []):
            seen[e["seq"]] = e
        final = any(e["kind"] == "status" and e.get("status") in {"succeeded", "failed", "cancelled"}
                    for e in seen.values())
        if not until_final or final:
            return
    raise AssertionError("no final status on the websocket")


def test_web_server_restart_open_clients_reconnect_and_catch_up(fstack, tmp_path):
    s = fstack
    api = s.api("alice")
    ds = _dataset(s, api, tmp_path)
    job = api.post(s.url("/api/jobs/"), json={
        "dataset": ds["id"], "architecture": "mlp", "train_config": {"epochs": 8, "batch_size": 2, "seed": 1}}).json()
    browser = login(s, "alice", PASSWORD)
    seen: dict[int, dict] = {}
    ws = open_socket(s, browser, job["id"])
    ws.send(json.dumps({"after": 0}))
    _collect(ws, seen, until_final=False)
    wait_for(lambda: api.get(s.url(f"/api/jobs/{job['id']}/")).json()["epoch"] >= 1, 120, "epoch 1")

    s.stop("web")  # the client's socket drops; the worker keeps training and storing events
    with pytest.raises(Exception):
        while True:
            ws.recv(timeout=10)
    time.sleep(2)  # let the job move on while no web server is up (not an assertion)
    s.start_web()  # same port; the session is in the database, so the cookie still works

    ws = open_socket(s, browser, job["id"])
    ws.send(json.dumps({"after": max(seen) if seen else 0}))  # what the page does on reconnect
    _collect(ws, seen, until_final=True)
    ws.close()
    done = s.wait_job(api, job["id"], timeout=240)
    assert done["status"] == "succeeded", s.logs()
    # Every event exactly once, in order, from 1 to the last: nothing from the outage is missing.
    assert sorted(seen) == list(range(1, done["last_seq"] + 1))


def test_sqlite_locked_for_a_few_seconds_the_job_and_web_carry_on(fstack, tmp_path):
    s = fstack
    if not s.database_url.startswith("sqlite"):
        pytest.skip("SQLite-specific fault")
    api = s.api("alice")
    ds = _dataset(s, api, tmp_path)
    job = api.post(s.url("/api/jobs/"), json={
        "dataset": ds["id"], "architecture": "mlp", "train_config": {"epochs": 6, "batch_size": 2, "seed": 1}}).json()
    wait_for(lambda: api.get(s.url(f"/api/jobs/{job['id']}/")).json()["status"] == "running", 120, "running")

    db = sqlite3.connect(s.database_url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")  # every writer (worker events, web requests) now waits
    results = {}

    def submit_while_locked():
        r = api.post(s.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp",
                                                 "train_config": {"epochs": 1}})
        results["status"], results["body"] = r.status_code, r.json()

    t = threading.Thread(target=submit_while_locked)
    t.start()
    time.sleep(4)  # hold the lock (not an assertion)
    db.execute("COMMIT")
    db.close()
    t.join(60)
    assert results.get("status") == 201, results  # the web request waited, then went through

    done = s.wait_job(api, job["id"], timeout=240)
    assert done["status"] == "succeeded", s.logs()
    events = api.get(s.url(f"/api/jobs/{job['id']}/events/")).json()["events"]
    assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))
    second = s.wait_job(api, results["body"]["id"], timeout=240)
    assert second["status"] == "succeeded", s.logs()
    assert "database is locked" not in s.logs()  # waited (busy timeout), never failed


def test_disk_full_while_checkpointing_fails_the_job_and_keeps_the_previous_checkpoint(fstack, tmp_path):
    """The worker's second checkpoint write goes to /dev/full, which answers every write with the
    kernel's ENOSPC: the job fails with the message, and checkpoint 1 stays whole and loadable."""
    s = fstack
    api = s.api("alice")
    ds = _dataset(s, api, tmp_path)
    job = api.post(s.url("/api/jobs/"), json={
        "dataset": ds["id"], "architecture": "mlp", "train_config": {"epochs": 4, "batch_size": 8, "seed": 1}}).json()
    ckpts = s.data_dir.resolve() / "jobs" / job["id"] / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    # The temp name of epoch 2's checkpoint, private to the run's attempt (its owner token: 1).
    (ckpts / ".ckpt-000002.pt.1.tmp").symlink_to("/dev/full")

    done = s.wait_job(api, job["id"], timeout=240)
    assert done["status"] == "failed", done
    assert done["error"].startswith("the disk is full on worker "), done["error"]
    assert "disk full while writing checkpoint ckpt-000002.pt" in done["error"], done["error"]
    assert "the previous checkpoint ckpt-000001.pt is intact" in done["error"]
    assert sorted(p.name for p in ckpts.iterdir()) == ["ckpt-000001.pt"]  # no temp file, no partial
    out = s.manage("shell", "-c", (
        "import torch; s = torch.load(%r, weights_only=True); print('EPOCH', s['epoch'], len(s['model']))"
        % str(ckpts / "ckpt-000001.pt"))).stdout
    assert "EPOCH 1 " in out, out
    events = api.get(s.url(f"/api/jobs/{job['id']}/events/")).json()["events"]
    assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))
    assert [e["status"] for e in events if e["kind"] == "status"] == ["queued", "running", "failed"]
