"""The whole loop on the real stack: upload → queue → Celery worker trains → websocket events
→ download → the model rebuilds and predicts without the web app."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import torch
from safetensors.torch import load_file
from websockets.exceptions import InvalidStatus

import models_zoo
import models_zoo.loading
from tests.integration.helpers import login, open_socket, receive_events
from tests.stack import PASSWORD, write_separable_csv

pytestmark = [pytest.mark.stack, pytest.mark.postgres]


def upload(stack, api, tmp_path, name="sep"):
    path = write_separable_csv(tmp_path / f"{name}.csv")
    with open(path, "rb") as f:
        r = api.post(stack.url("/api/datasets/"), files={"file": (f"{name}.csv", f, "text/csv")}, data={"name": name})
    assert r.status_code == 201, r.text
    ds = stack.wait_dataset(api, r.json()["id"])
    assert ds["status"] == "ready", ds
    return ds


def test_train_over_http_with_live_websocket_events_and_download(stack, tmp_path):
    api = stack.api("alice")
    ds = upload(stack, api, tmp_path)
    assert ds["info"]["num_rows"] == 400 and ds["info"]["num_classes"] == 2

    browser = login(stack, "alice", PASSWORD)
    r = api.post(stack.url("/api/jobs/"), json={
        "dataset": ds["id"], "architecture": "mlp", "name": "live",
        "model_config": {"hidden_sizes": [32], "activation": "relu"},
        "train_config": {"epochs": 15, "batch_size": 16, "learning_rate": 0.01, "optimizer": "adam"},
    })
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]

    seen: dict[int, dict] = {}
    with open_socket(stack, browser, job_id) as ws:
        ws.send(json.dumps({"after": 0}))
        deadline = time.monotonic() + 120
        status = None
        while status not in {"succeeded", "failed", "cancelled"} and time.monotonic() < deadline:
            for ev in receive_events(ws, timeout=60):
                seen[ev["seq"]] = ev
                if ev["kind"] == "status":
                    status = ev["status"]
    assert status == "succeeded", stack.logs()
    job = api.get(stack.url(f"/api/jobs/{job_id}/")).json()
    # Every stored event reached the page, numbered 1..N with no gap.
    assert sorted(seen) == list(range(1, job["last_seq"] + 1))
    metrics = [e for e in seen.values() if e["kind"] == "metric"]
    val = [e for e in metrics if e["split"] == "val"]
    assert len(val) == 15 and any(e["split"] == "train" for e in metrics)
    assert val[-1]["values"]["accuracy"] >= 0.9
    assert any(e["kind"] == "samples" for e in seen.values())
    assert any(e["kind"] == "progress" for e in seen.values())

    # The history endpoint returns the same events.
    history = api.get(stack.url(f"/api/jobs/{job_id}/events/"), params={"after": 0}).json()["events"]
    assert [e["seq"] for e in history] == sorted(seen)

    # Download both files and rebuild the model without the web app.
    for name in ("model.safetensors", "config.json"):
        resp = browser.get(stack.url(f"/jobs/{job_id}/artifacts/{name}"))
        assert resp.status_code == 200
        assert "attachment" in resp.headers["Content-Disposition"]
        (tmp_path / name).write_bytes(resp.content)
    model, cfg = models_zoo.loading.load_model(tmp_path)
    assert cfg["class_names"] == ["neg", "pos"]
    assert cfg["train_config"]["optimizer"] == "adam" and cfg["input_shape"] == [3]
    # Predict on raw feature rows, normalised with the statistics shipped in config.json.
    norm = cfg["dataset"]["normalization"]
    raw = torch.tensor([[2.0, 1.0, 0.0], [-2.0, -1.0, 0.0]])
    x = (raw - torch.tensor(norm["mean"])) / torch.tensor(norm["std"])
    pred = model(x).argmax(1).tolist()
    assert [cfg["class_names"][i] for i in pred] == ["pos", "neg"]
    assert set(load_file(str(tmp_path / "model.safetensors")))  # plain safetensors, no pickle


def test_websocket_refuses_anonymous_other_users_and_foreign_origin(stack, tmp_path):
    api = stack.api("alice")
    ds = upload(stack, api, tmp_path, "ws-access")
    job_id = api.post(stack.url("/api/jobs/"), json={
        "dataset": ds["id"], "architecture": "mlp", "train_config": {"epochs": 1}}).json()["id"]
    stack.wait_job(api, job_id)

    with open_socket(stack, login(stack, "root", PASSWORD), job_id) as ws:  # staff may watch
        ws.send(json.dumps({"after": 0}))
        assert receive_events(ws, timeout=10)

    for session, origin in [
        (None, "default"),  # anonymous
        (login(stack, "bob", PASSWORD), "default"),  # another user
        (login(stack, "alice", PASSWORD), "http://evil.example"),  # cross-site page
        (login(stack, "alice", PASSWORD), None),  # no Origin header
    ]:
        try:
            with open_socket(stack, session, job_id, origin=origin) as ws:
                ws.recv(timeout=5)
        except (InvalidStatus, Exception) as exc:  # noqa: B014 - closed or refused: both deny
            assert "events" not in str(exc)
        else:
            pytest.fail("socket should have been refused")


def test_cancel_running_job_stops_at_step_boundary(stack, tmp_path):
    api = stack.api("alice")
    ds = upload(stack, api, tmp_path, "cancel")
    job_id = api.post(stack.url("/api/jobs/"), json={
        "dataset": ds["id"], "architecture": "mlp",
        "train_config": {"epochs": 10000, "batch_size": 1}}).json()["id"]
    stack.wait_job(api, job_id, statuses=("running",))
    time.sleep(1)
    r = api.post(stack.url(f"/api/jobs/{job_id}/cancel/"))
    assert r.status_code == 200 and r.json()["cancel_requested"]
    t0 = time.monotonic()
    job = stack.wait_job(api, job_id, timeout=30)
    assert job["status"] == "cancelled"
    print(f"cancel took {time.monotonic() - t0:.2f}s")
    assert job["epoch"] < 10000 and job["artifacts"] == []


def test_bad_upload_gets_a_clear_message_and_other_users_see_nothing(stack, tmp_path):
    api = stack.api("alice")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n1,2,x\n3,4\n")
    with open(bad, "rb") as f:
        r = api.post(stack.url("/api/datasets/"), files={"file": ("bad.csv", f)})
    ds = stack.wait_dataset(api, r.json()["id"])
    assert ds["status"] == "failed" and "line 3" in ds["error"]

    bob = stack.api("bob")
    assert bob.get(stack.url(f"/api/datasets/{ds['id']}/")).status_code == 404
    assert ds["id"] not in {d["id"] for d in bob.get(stack.url("/api/datasets/")).json()["datasets"]}
    # The failed upload left no dataset: the id answers 404, with the reason for its owner only.
    assert api.get(stack.url(f"/api/datasets/{ds['id']}/")).status_code == 404
    root = stack.api("root").get(stack.url(f"/api/datasets/{ds['id']}/"))
    assert root.status_code == 404 and "line 3" not in root.text


def test_failed_job_shows_its_error(stack, tmp_path):
    api = stack.api("alice")
    ds = upload(stack, api, tmp_path, "broken")
    shutil.rmtree(stack.data_dir / "datasets" / ds["id"])  # the cache vanished from the shared disk
    job_id = api.post(stack.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp"}).json()["id"]
    job = stack.wait_job(api, job_id)
    assert job["status"] == "failed" and "FileNotFoundError" in job["error"] and "info.json" in job["error"]
    page = login(stack, "alice", PASSWORD).get(stack.url(f"/jobs/{job_id}/")).text
    assert 'id="job-error"' in page and "FileNotFoundError" in page
    events = api.get(stack.url(f"/api/jobs/{job_id}/events/")).json()["events"]
    assert events[-1]["kind"] == "status" and events[-1]["status"] == "failed" and events[-1]["error"]
    assert any(e["kind"] == "log" and e["level"] == "error" for e in events)  # the traceback, for the user
