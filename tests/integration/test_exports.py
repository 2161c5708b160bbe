"""Exports on the real stack (redis-server, the `notify` worker, the ASGI server): the TensorBoard
download and MLflow pushes, to a file store and to an MLflow server, read back equal to the
history the events API serves. The push runs in the notify worker, whose environment has no
MLFLOW_ALLOW_FILE_STORE: the product sets it where it uses the file store."""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from tests.stack import Stack, wait_for
from tests.webapp.exports.fake_mlflow import FakeMlflow

pytestmark = pytest.mark.stack

JOB_SCRIPT = """
import random
from django.contrib.auth.models import User
from django.utils import timezone
from webapp.jobs.events import append_events
from webapp.jobs.lifecycle import file_sha256
from webapp.jobs.models import Artifact, Job
alice = User.objects.get(username="alice")
job = Job.objects.create(owner=alice, name="stack export", architecture="mlp", status="succeeded",
                         model_config={"hidden_sizes": [8]}, train_config={"epochs": 3},
                         started_at=timezone.now(), finished_at=timezone.now())
rng = random.Random(3)
append_events(job.pk, [("metric", {"split": "train" if i % 10 else "val", "step": i, "epoch": i // 500,
                                   "values": {"loss": rng.random(), "accuracy": rng.random()},
                                   "t": round(1760000000 + i * 0.25, 4)}) for i in range(1, 1501)])
art = job.directory / "artifacts"
art.mkdir(parents=True)
(art / "model.safetensors").write_bytes(b"weights" * 100)
Artifact.objects.create(job=job, name="model.safetensors", size_bytes=700, sha256=file_sha256(art / "model.safetensors"))
print("JOB=" + str(job.pk))
"""


@pytest.fixture(scope="module")
def export_stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-root")
    s = Stack(env={"TRAINYARD_MLFLOW_FILE_ROOT": str(root), "TRAINYARD_MLFLOW_ALLOWLIST": "127.0.0.1",
                   "TRAINYARD_RATE_EXPORT": "6000/min"})
    s.env.pop("MLFLOW_ALLOW_FILE_STORE", None)
    s.worker_queues = "ingest"  # nothing here trains: a light worker for the stack's default queue set
    s.start()
    try:
        out = s.manage("shell", "-c", JOB_SCRIPT).stdout
        s.job_id = out.split("JOB=", 1)[1].strip().splitlines()[0]
        s.mlflow_root = root
        yield s
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.close()


def _history(stack) -> dict:
    """{(split, name): [(step, t, value)]} as GET /api/jobs/<id>/events/ serves it."""
    events = stack.api("alice").get(stack.url(f"/api/jobs/{stack.job_id}/events/?limit=5000")).json()["events"]
    out: dict = {}
    for e in events:
        if e["kind"] == "metric":
            for name, value in e["values"].items():
                out.setdefault((e["split"], name), []).append((e["step"], e["t"], value))
    return out


def _wait_export(stack, export_id: str) -> dict:
    api, result = stack.api("alice"), {}

    def ended():
        e = api.get(stack.url(f"/api/jobs/{stack.job_id}/exports/mlflow/{export_id}/")).json()
        result.update(e)
        return e["status"] in ("done", "failed")

    wait_for(ended, 120, "the MLflow push", interval=0.3)
    return result


def test_tensorboard_download(export_stack, tmp_path):
    stack = export_stack
    r = stack.api("alice").get(stack.url(f"/api/jobs/{stack.job_id}/exports/tensorboard/"))
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    (top,) = list(tmp_path.iterdir())
    for (split, name), points in _history(stack).items():
        acc = EventAccumulator(str(top / split), size_guidance={SCALARS: 0})
        acc.Reload()
        assert [(e.step, e.wall_time, e.value) for e in acc.Scalars(name)] == [
            (s, t, float(np.float32(v))) for s, t, v in points]
    assert stack.api("bob").get(stack.url(f"/api/jobs/{stack.job_id}/exports/tensorboard/")).status_code == 404


def test_mlflow_push_to_a_file_store_in_the_notify_worker(export_stack):
    from mlflow import MlflowClient

    stack = export_stack
    uri = (stack.mlflow_root / "team").as_uri()
    r = stack.api("alice").post(stack.url(f"/api/jobs/{stack.job_id}/exports/mlflow/"),
                                json={"tracking_uri": uri, "register_model": True, "model_name": "stack-model"})
    assert r.status_code == 202, r.text
    export = _wait_export(stack, r.json()["id"])
    assert export["status"] == "done", (export, stack.logs())
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # to read it back in this process
    try:
        client = MlflowClient(tracking_uri=uri)
        for (split, name), points in _history(stack).items():
            got = [(m.step, m.timestamp, m.value) for m in client.get_metric_history(export["run_id"], f"{split}/{name}")]
            assert sorted(got) == sorted((s, int(round(t * 1000)), v) for s, t, v in points)
        assert client.get_model_version("stack-model", "1").run_id == export["run_id"]
    finally:
        del os.environ["MLFLOW_ALLOW_FILE_STORE"]


def test_mlflow_push_to_a_server_and_a_refused_one(export_stack):
    stack = export_stack
    api = stack.api("alice")
    with FakeMlflow() as server:
        r = api.post(stack.url(f"/api/jobs/{stack.job_id}/exports/mlflow/"), json={"tracking_uri": server.uri})
        export = _wait_export(stack, r.json()["id"])
        assert export["status"] == "done", export
        sizes = [len(json.loads(q["body"]).get("metrics", [])) for q in server.requests
                 if q["path"].endswith("/runs/log-batch")]
        assert sum(sizes) == 3000 and max(sizes) <= 1000
    r = api.post(stack.url(f"/api/jobs/{stack.job_id}/exports/mlflow/"), json={"tracking_uri": "http://10.0.0.1"})
    assert r.status_code == 400 and "private-network" in r.json()["errors"]["tracking_uri"]
    assert stack.api("bob").post(stack.url(f"/api/jobs/{stack.job_id}/exports/mlflow/"),
                                 json={"tracking_uri": server.uri}).status_code == 404
