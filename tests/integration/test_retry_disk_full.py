"""A full disk while the trained model is written fails the job with one readable message; after
space is freed, Retry (same job) resumes from the last checkpoint and succeeds. Real stack; the
full disk is real too: a 4 KiB tmpfs mounted over the job's artifacts folder (needs root)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.stack import Stack, write_separable_csv

pytestmark = pytest.mark.stack


def _mount_tiny(path):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(path)], capture_output=True, text=True)
    return r.returncode == 0, r.stderr.strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs (a real full disk) needs root")
def test_retry_after_disk_full_resumes_from_the_last_checkpoint(tmp_path):
    s = Stack().start()
    mounted = None
    try:
        api = s.api("alice")
        path = write_separable_csv(tmp_path / "t.csv", n=300)
        with open(path, "rb") as f:
            ds = api.post(s.url("/api/datasets/"), files={"file": (path.name, f)}, data={"name": "t"}).json()
        assert s.wait_dataset(api, ds["id"])["status"] == "ready"
        s.stop("worker")  # the job must wait until its artifacts folder is the full disk
        job = api.post(s.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp",
                                                  "model_config": {"hidden_sizes": [256, 256]},
                                                  "train_config": {"epochs": 3}}).json()
        artifacts = s.data_dir / "jobs" / job["id"] / "artifacts"
        ok, why = _mount_tiny(artifacts)
        if not ok:
            pytest.skip(f"cannot mount a tmpfs here: {why}")
        mounted = artifacts
        s.start_worker()
        failed = s.wait_job(api, job["id"], timeout=180)
        assert failed["status"] == "failed", failed
        assert failed["error"].startswith("the disk is full on worker ") and "press Retry" in failed["error"], failed
        checkpoints = sorted(p.name for p in (s.data_dir / "jobs" / job["id"] / "checkpoints").glob("ckpt-*.pt"))
        assert checkpoints and checkpoints[-1].endswith("000003.pt"), checkpoints  # all epochs were trained

        subprocess.run(["umount", str(artifacts)], check=True)  # space freed
        mounted = None
        r = api.post(s.url(f"/api/jobs/{job['id']}/retry/"))
        assert r.status_code == 200, r.text
        done = s.wait_job(api, job["id"], timeout=180)
        assert done["status"] == "succeeded", done
        names = {a["name"] for a in api.get(s.url(f"/api/jobs/{job['id']}/")).json()["artifacts"]}
        assert "model.safetensors" in names
        events = api.get(s.url(f"/api/jobs/{job['id']}/events/")).json()["events"]
        logs = " ".join(e.get("text", "") for e in events if e["kind"] == "log")
        assert "retried by alice" in logs and "resumed from the checkpoint after epoch 3" in logs
        # the retry trained no epoch again: every epoch's validation point is there once
        val_epochs = [e.get("epoch") for e in events
                      if e["kind"] == "metric" and e.get("split") == "val"]
        assert len(val_epochs) == len(set(val_epochs)) == 3, val_epochs
    finally:
        if mounted is not None:
            subprocess.run(["umount", str(mounted)])
        s.close()
