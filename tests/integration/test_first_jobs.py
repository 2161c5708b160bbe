"""On the real stack: "Add sample datasets" ingests one sample of every kind through the upload
path, and the guided first job of each succeeds on the CPU worker and learns something.
(bench/first_jobs.py prints how long each takes.)"""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from tests.integration.helpers import login
from tests.stack import PASSWORD, wait_for
from webapp.datasets.samples import SAMPLES

pytestmark = pytest.mark.stack


def post_page(stack, session, path):
    return session.post(stack.url(path), data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
                        headers={"Referer": stack.url("/datasets/")}, allow_redirects=False)


def run_first_jobs(stack, user: str) -> dict:
    """Add the samples as `user`, start every guided first job; {kind: (job, seconds it ran)}."""
    browser, api = login(stack, user, PASSWORD), stack.api(user)
    r = post_page(stack, browser, "/datasets/samples/")
    assert r.status_code == 302 and r.headers["Location"] == "/datasets/"

    def all_ready():
        rows = api.get(stack.url("/api/datasets/")).json()["datasets"]
        return rows if len(rows) == len(SAMPLES) and all(d["status"] == "ready" for d in rows) else None

    wait_for(all_ready, 180, "the sample datasets' ingest", interval=0.5)
    datasets = {d["kind"]: d for d in all_ready()}
    assert set(datasets) == set(SAMPLES)
    started = {}
    for kind, sample in SAMPLES.items():
        if sample.architecture is None:
            continue
        r = post_page(stack, browser, f"/datasets/{datasets[kind]['id']}/first-job/")
        assert r.status_code == 302, (kind, r.status_code)
        started[kind] = re.fullmatch(r"/jobs/([0-9a-f-]{36})/", r.headers["Location"]).group(1)
    out = {}
    for kind, job_id in started.items():
        job = stack.wait_job(api, job_id, timeout=300)
        seconds = ((datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"]))
                   .total_seconds() if job["finished_at"] and job["started_at"] else None)
        out[kind] = (job, seconds)
    return out


def test_every_sample_ingests_and_every_guided_first_job_succeeds(stack):
    results = run_first_jobs(stack, "charlie")
    assert set(results) == {k for k, s in SAMPLES.items() if s.architecture}
    for kind, (job, _) in results.items():
        assert job["status"] == "succeeded", (kind, job["error"])
        if kind == "corpus":
            assert job["metrics"]["perplexity"] < 20  # of ~30 characters: it learned the rhymes' letters
        else:
            assert job["metrics"]["accuracy"] > 0.7, (kind, job["metrics"])
