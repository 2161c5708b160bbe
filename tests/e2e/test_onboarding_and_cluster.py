"""Chromium on the real stack: a new user on an empty installation adds the sample data in one
click and runs the guided first job to "succeeded" (with its resource-use chart); the cluster
page shows a running job on its worker, by name to its owner and as "another user's job" to
anyone else, and follows it live."""

from __future__ import annotations

import pytest

from tests.e2e.test_ui_flow import sign_in
from tests.stack import running_stack, write_separable_csv

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


@pytest.fixture(scope="module")
def empty_stack():
    """An installation of its own: no dataset and no job of anyone."""
    with running_stack() as s:
        yield s


def test_a_new_user_adds_sample_data_and_runs_the_guided_first_job(page, empty_stack, screenshots):
    stack = empty_stack
    assert stack.api("root").get(stack.url("/api/jobs/")).json()["jobs"] == []  # staff: nobody has one
    assert stack.api("root").get(stack.url("/api/datasets/")).json()["datasets"] == []
    sign_in(page, stack)
    page.wait_for_selector("#getting-started")
    assert "Getting started" in page.inner_text("#getting-started")
    page.goto(stack.url("/jobs/new/"))  # the form cannot queue a job without a dataset
    assert page.is_disabled("#job-form button[type=submit]") and page.is_visible("#no-dataset")
    page.goto(stack.url("/jobs/"))
    page.click("#add-samples")
    page.wait_for_url("**/datasets/")
    assert page.locator("#sample-datasets li").count() == 6
    page.screenshot(path=str(screenshots / "getting-started.png"), full_page=True)
    # The page reloads itself while the samples are checked; the table sample's button appears.
    page.wait_for_selector("button[data-first-job=tabular]", timeout=120_000)
    page.click("button[data-first-job=tabular]")
    page.wait_for_selector("#job-page")
    page.wait_for_selector("#job-status.succeeded", timeout=180_000)
    assert "accuracy" in page.inner_text("#metrics-table")
    # The worker's resource samples of the job, charted on its page.
    assert int(page.get_attribute("#resources-card", "data-samples")) >= 1
    assert page.get_attribute("#figure-memory", "data-empty") == "false"
    assert page.eval_on_selector("#chart-memory", "c => Chart.getChart(c).data.datasets[0].data.length") >= 1
    page.goto(stack.url("/jobs/"))
    assert page.locator("#getting-started").count() == 0  # done: the panel is gone
    assert page.errors == []


def test_the_cluster_page_shows_a_running_job_on_its_worker_live(browser, stack, tmp_path, screenshots):
    api = stack.api("alice")
    path = write_separable_csv(tmp_path / "cluster.csv", n=400)
    with open(path, "rb") as f:
        r = api.post(stack.url("/api/datasets/"), files={"file": (path.name, f)}, data={"name": "cluster"})
    ds = stack.wait_dataset(api, r.json()["id"], timeout=120)
    contexts = [browser.new_context(viewport={"width": 1280, "height": 900}) for _ in range(2)]
    alice_page, bob_page = (c.new_page() for c in contexts)
    job_id = None
    try:
        sign_in(alice_page, stack, "alice")
        sign_in(bob_page, stack, "bob")
        alice_page.click("nav >> text=Cluster")
        alice_page.wait_for_url("**/cluster/")
        alice_page.wait_for_selector("[data-worker]")
        job_id = api.post(stack.url("/api/jobs/"), json={
            "dataset": ds["id"], "name": "alices-cluster-job", "architecture": "mlp",
            "train_config": {"epochs": 10000, "batch_size": 1}}).json()["id"]
        # No reload: the page's poll shows the job on its worker once it runs.
        card = alice_page.wait_for_selector(f"[data-worker][data-state=busy]:has([data-job='{job_id}'])",
                                            timeout=60_000)
        assert "alices-cluster-job" in card.inner_text() and "yours" in card.inner_text()
        worker = card.get_attribute("data-worker")
        # The job's resource use, from its worker's heartbeat, on the card (a poll or two later).
        alice_page.wait_for_selector(f"[data-worker='{worker}'] [data-usage]", timeout=30_000)
        assert "CPU" in alice_page.inner_text(f"[data-worker='{worker}'] [data-usage]")
        alice_page.screenshot(path=str(screenshots / "cluster.png"), full_page=True)
        bob_page.goto(stack.url("/cluster/"))
        theirs = bob_page.wait_for_selector(f"[data-worker='{worker}'] [data-hidden-job]")
        assert "another user's job" in theirs.inner_text()
        assert "alices-cluster-job" not in bob_page.content()
    finally:
        if job_id:
            api.post(stack.url(f"/api/jobs/{job_id}/cancel/"))
            stack.wait_job(api, job_id, timeout=60)
        for c in contexts:
            c.close()
