"""Continue training through the real stack (issue 19 item 6): 5 epochs, then "continue for 5
more", trains the same model as 10 uninterrupted epochs with the same seed and schedule."""

from __future__ import annotations

import pytest

from tests.stack import running_stack, write_separable_csv

pytestmark = pytest.mark.stack


def test_five_plus_five_epochs_equal_ten(tmp_path):
    with running_stack() as s:
        api = s.api("alice")
        path = write_separable_csv(tmp_path / "t.csv", n=400)
        with open(path, "rb") as f:
            ds = api.post(s.url("/api/datasets/"), files={"file": (path.name, f)}, data={"name": "t"}).json()
        assert s.wait_dataset(api, ds["id"])["status"] == "ready"
        settings = {"seed": 7, "lr_schedule": "step", "step_epochs": 3, "step_gamma": 0.5, "learning_rate": 0.01}

        def submit(epochs):
            job = api.post(s.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp",
                                                      "model_config": {"hidden_sizes": [32], "dropout": 0.1},
                                                      "train_config": {**settings, "epochs": epochs}}).json()
            return s.wait_job(api, job["id"], timeout=180)

        first = submit(5)
        assert first["status"] == "succeeded", first
        r = api.post(s.url(f"/api/jobs/{first['id']}/continue/"), json={"epochs": 5})
        assert r.status_code == 201, r.text
        continued = s.wait_job(api, r.json()["id"], timeout=180)
        straight = submit(10)
        assert continued["status"] == straight["status"] == "succeeded", (continued, straight)
        assert continued["train_config"]["epochs"] == 10
        assert continued["lineage"] == {"job": first["id"], "name": first["name"],
                                        "checkpoint": "ckpt-000005.pt", "epoch": 5}

        def model_sha(job):
            arts = api.get(s.url(f"/api/jobs/{job['id']}/")).json()["artifacts"]
            return {a["name"]: a["sha256"] for a in arts}["model.safetensors"]

        # Weights, optimizer, step schedule and random state (dropout, shuffling) carried on:
        # the same bytes as the uninterrupted run (tolerance: none needed on one CPU worker).
        assert model_sha(continued) == model_sha(straight)
        for k, v in straight["metrics"].items():
            if k not in ("samples_per_s", "train_seconds") and isinstance(v, float):
                assert continued["metrics"][k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
        events = api.get(s.url(f"/api/jobs/{continued['id']}/events/")).json()["events"]
        val_epochs = [e["epoch"] for e in events if e["kind"] == "metric" and e.get("split") == "val"]
        assert val_epochs == [6, 7, 8, 9, 10], val_epochs  # only the 5 new epochs were trained
        logs = " ".join(e.get("text", "") for e in events if e["kind"] == "log")
        assert "resumed from the checkpoint after epoch 5" in logs
        card = api.get(s.url(f"/api/jobs/{continued['id']}/artifacts/MODEL_CARD.md"))
        assert f"continued from job {first['name']} ({first['id']})" in card.text
