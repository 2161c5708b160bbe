"""Every dataset kind through the real stack, and every architecture that accepts it trained
through the API by the real worker (one epoch, default settings)."""

from __future__ import annotations

import importlib.util

import pytest

from tests import datagen
from tests.stack import write_separable_csv

pytestmark = pytest.mark.stack

INGEST_MODULES = {"tabular": "tabular", "image": "images", "text": "text", "corpus": "corpus",
                  "sequence": "sequences"}
KINDS = {
    "tabular": lambda d: write_separable_csv(d / "table.csv"),
    "image": lambda d: datagen.digits_png_zip(d / "digits.zip", limit=600),
    "text": lambda d: datagen.sentiment_jsonl(d / "reviews.jsonl", n=300),
    "corpus": lambda d: datagen.repetitive_corpus(d / "verses.txt", repeats=60),
    "sequence": lambda d: datagen.sequence_csv(d / "series.csv", n=300),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_ingests_and_every_accepting_architecture_trains(stack, tmp_path, kind):
    if importlib.util.find_spec(f"workers.datasets.{INGEST_MODULES[kind]}") is None:
        pytest.skip(f"ingest of the {kind} kind is not implemented yet (issue 3)")
    api = stack.api("alice")
    path = KINDS[kind](tmp_path)
    with open(path, "rb") as f:
        r = api.post(stack.url("/api/datasets/"), files={"file": (path.name, f)},
                     data={"kind": kind, "name": f"{kind} data"})
    assert r.status_code == 201, r.text
    ds = stack.wait_dataset(api, r.json()["id"], timeout=120)
    assert ds["status"] == "ready", ds["error"]
    assert ds["kind"] == kind and ds["info"]["kind"] == kind
    # Training reads the cache only: the original upload is not needed any more.
    source = next((stack.data_dir / "datasets" / ds["id"]).glob("source.*"))
    source.unlink()

    # Hugging Face entries start from a pretrained model (tests/integration/test_hf_jobs.py).
    archs = [a for a in api.get(stack.url("/api/architectures/")).json()["architectures"]
             if kind in a["dataset_kinds"] and not a["name"].startswith("hf_")]
    assert archs, f"no architecture accepts {kind}"
    jobs = {}
    for arch in archs:
        r = api.post(stack.url("/api/jobs/"), json={
            "dataset": ds["id"], "architecture": arch["name"],
            "train_config": {"epochs": 1, "batch_size": 32}})
        assert r.status_code == 201, (arch["name"], r.text)
        jobs[arch["name"]] = r.json()["id"]
    for name, job_id in jobs.items():
        job = stack.wait_job(api, job_id, timeout=300)
        assert job["status"] == "succeeded", (name, job["error"], stack.logs())
        assert {"config.json", "model.safetensors"} <= {a["name"] for a in job["artifacts"]}
        events = api.get(stack.url(f"/api/jobs/{job_id}/events/")).json()["events"]
        samples = [e for e in events if e["kind"] == "samples"]
        assert samples and samples[-1]["items"], name
        if kind == "image":
            assert samples[-1]["items"][0]["image"].startswith("data:image/png;base64,")
        if kind == "corpus":
            assert "generated" in samples[-1]["items"][0]
