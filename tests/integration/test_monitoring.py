"""Metrics and probes on the real stack: what the Celery worker records (ingest, event appends,
the claim, the finish) reaches `/metrics` served by the web process, through Redis."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.helpers import login
from tests.stack import PASSWORD, wait_for, write_separable_csv

pytestmark = [pytest.mark.stack, pytest.mark.postgres]


def sample(text: str, name: str, **labels) -> float:
    values = [s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == name and s.labels == labels]
    return values[0] if values else 0.0


def test_what_the_worker_records_reaches_the_web_servers_metrics(stack, tmp_path):
    api = stack.api("alice")
    with open(write_separable_csv(tmp_path / "sep.csv"), "rb") as f:
        r = api.post(stack.url("/api/datasets/"), files={"file": ("sep.csv", f, "text/csv")}, data={"name": "sep"})
    assert r.status_code == 201, r.text
    assert stack.wait_dataset(api, r.json()["id"])["status"] == "ready"
    r = api.post(stack.url("/api/jobs/"), json={
        "dataset": r.json()["id"], "architecture": "mlp", "name": "metrics",
        "model_config": {"hidden_sizes": [8]}, "train_config": {"epochs": 2, "batch_size": 32}})
    assert r.status_code == 201, r.text
    assert stack.wait_job(api, r.json()["id"])["status"] == "succeeded", stack.logs()

    assert requests.get(stack.url("/metrics")).status_code == 401
    staff = login(stack, "root", PASSWORD)
    text = {}

    def recorded() -> bool:
        text["now"] = staff.get(stack.url("/metrics")).text
        return (sample(text["now"], "trainyard_ingest_duration_seconds_count", kind="tabular", outcome="ready") >= 1
                and sample(text["now"], "trainyard_jobs_finished_total", status="succeeded") >= 1
                and sample(text["now"], "trainyard_dispatch_latency_seconds_count") >= 1
                and sample(text["now"], "trainyard_event_append_seconds_count") >= 3)

    wait_for(recorded, 20, "the worker's metrics in /metrics")
    m = text["now"]
    assert sample(m, "trainyard_metrics_store_up") == 1
    assert sample(m, "trainyard_jobs", status="succeeded") >= 1
    assert sample(m, "trainyard_workers_online", queue="train") >= 1
    assert sample(m, "trainyard_job_queue_wait_seconds_gcount") >= 1

    assert requests.get(stack.url("/healthz")).json() == {"status": "ok"}
    ready = requests.get(stack.url("/readyz"))
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "redis": "ok", "workers": "ok"}
