"""Chromium on the real stack: two members of a project, each on the page of the other's job,
see its live metrics arrive over the websocket (no reload), and the jobs list shows the project."""

from __future__ import annotations

import pytest

from tests.e2e.test_ui_flow import sign_in
from tests.stack import write_separable_csv

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

# Counts the metric events the page's websockets deliver (the page's own code is untouched).
COUNT_SOCKET_METRICS = """
(() => {
  const Native = window.WebSocket;
  window.socketMetrics = 0;
  window.WebSocket = function (...args) {
    const ws = new Native(...args);
    ws.addEventListener("message", (m) => {
      try {
        for (const e of JSON.parse(m.data).events || []) if (e.kind === "metric") window.socketMetrics++;
      } catch (_) { /* not JSON */ }
    });
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();
"""


@pytest.fixture
def second_page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("response", lambda r: r.status >= 400 and page.errors.append(f"HTTP {r.status} {r.url}"))
    yield page
    context.close()


def _queue(stack, user, dataset, project):
    """A long job (cancelled by the test once it has been seen live)."""
    r = stack.api(user).post(stack.url("/api/jobs/"), json={
        "dataset": dataset, "architecture": "mlp", "project": project, "name": f"{user}'s run",
        "model_config": {"hidden_sizes": [16]}, "train_config": {"epochs": 2000, "batch_size": 1}})
    assert r.status_code == 201, r.text
    assert r.json()["project"] == project
    return r.json()["id"]


def _watch_live(page, stack, job):
    """Wait on the job's page until metric events arrive over its socket while the job runs."""
    page.wait_for_selector("#conn-state:has-text('live')", timeout=60_000)
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    page.wait_for_function("() => window.socketMetrics > 0", timeout=240_000)
    assert page.get_attribute("#job-status", "class").split()[-1] == "running"
    page.wait_for_function("() => Number(document.getElementById('charts').dataset.points) > 0", timeout=30_000)
    assert page.evaluate("window.sameDocument") is True


def test_two_members_see_each_others_live_jobs(page, second_page, stack, tmp_path):
    alice, bob = stack.api("alice"), stack.api("bob")
    r = alice.post(stack.url("/api/projects/"), json={"name": "e2e-team"})
    assert r.status_code == 201, r.text
    project = r.json()["id"]
    assert alice.post(stack.url(f"/api/projects/{project}/members/"),
                      json={"username": "bob", "role": "member"}).status_code == 201
    path = write_separable_csv(tmp_path / "team.csv", n=400)
    with open(path, "rb") as f:
        r = alice.post(stack.url("/api/datasets/"), files={"file": (path.name, f)},
                       data={"kind": "tabular", "name": "team-data", "project": project})
    assert r.status_code == 201, r.text
    dataset = r.json()["id"]
    assert stack.wait_dataset(alice, dataset, timeout=120)["status"] == "ready"
    # charlie, not a member, sees neither the dataset nor the jobs.
    assert stack.api("charlie").get(stack.url(f"/api/datasets/{dataset}/")).status_code == 404

    alices_job = _queue(stack, "alice", dataset, project)
    bobs_job = _queue(stack, "bob", dataset, project)  # runs after alice's on the one worker
    for p in (page, second_page):
        p.add_init_script(COUNT_SOCKET_METRICS)
    sign_in(page, stack, "alice")
    sign_in(second_page, stack, "bob")
    # Each on the other's job page.
    page.goto(stack.url(f"/jobs/{bobs_job}/"))
    second_page.goto(stack.url(f"/jobs/{alices_job}/"))
    assert charlie_refused(stack, alices_job)
    try:
        _watch_live(second_page, stack, alices_job)  # bob follows alice's job as it runs
        # bob, a member, may not cancel a teammate's job; alice cancels her own: bob's page sees it end.
        assert bob.post(stack.url(f"/api/jobs/{alices_job}/cancel/")).status_code == 403
        assert alice.post(stack.url(f"/api/jobs/{alices_job}/cancel/")).status_code in (200, 202)
        second_page.wait_for_selector("#job-status.cancelled", timeout=60_000)
        _watch_live(page, stack, bobs_job)  # then alice follows bob's, which the worker takes next
        # alice, the maintainer, may cancel anyone's job in the project.
        assert alice.post(stack.url(f"/api/jobs/{bobs_job}/cancel/")).status_code in (200, 202)
        page.wait_for_selector("#job-status.cancelled", timeout=60_000)
    finally:
        for job in (alices_job, bobs_job):
            alice.post(stack.url(f"/api/jobs/{job}/cancel/"))
    for p in (page, second_page):
        assert p.evaluate("window.sameDocument") is True
    second_page.goto(stack.url(f"/jobs/?project={project}"))
    for job in (alices_job, bobs_job):
        assert second_page.locator(f"tr[data-job='{job}'] td[data-label='Project']").inner_text() == "e2e-team"
    assert page.errors == [] and second_page.errors == []


def charlie_refused(stack, job) -> bool:
    return stack.api("charlie").get(stack.url(f"/api/jobs/{job}/")).status_code == 404
