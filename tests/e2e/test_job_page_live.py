"""Chromium on the real stack: the job page follows a job to its end without a reload (what the
job then offers appears), and its charts (zoom, hover, x axis, CSV/PNG export)."""

from __future__ import annotations

import pytest

from tests.e2e.test_ui_flow import sign_in
from tests.stack import write_separable_csv

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


@pytest.fixture(scope="module")
def dataset(stack, tmp_path_factory):
    api = stack.api("alice")
    path = write_separable_csv(tmp_path_factory.mktemp("live") / "live.csv", n=400)
    with open(path, "rb") as f:
        r = api.post(stack.url("/api/datasets/"), files={"file": (path.name, f)}, data={"kind": "tabular", "name": "live"})
    assert r.status_code == 201, r.text
    assert stack.wait_dataset(api, r.json()["id"], timeout=120)["status"] == "ready"
    return r.json()["id"]


def queue(stack, dataset, epochs, batch_size=4):
    r = stack.api("alice").post(stack.url("/api/jobs/"), json={
        "dataset": dataset, "architecture": "mlp", "model_config": {"hidden_sizes": [16]},
        "train_config": {"epochs": epochs, "batch_size": batch_size}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_the_page_shows_what_a_succeeded_job_offers_without_a_reload(page, stack, dataset):
    sign_in(page, stack)
    job = queue(stack, dataset, epochs=20)
    page.goto(stack.url(f"/jobs/{job}/"))
    assert page.get_attribute("#job-status", "class").split()[-1] in ("queued", "running")
    assert page.locator("#try-link").count() == 0 and page.locator("#onnx-button").count() == 0
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    page.wait_for_selector("#job-status.succeeded", timeout=180_000)
    page.wait_for_selector("#try-link", timeout=15_000)
    assert page.evaluate("window.sameDocument") is True
    assert page.get_attribute("#job-page", "data-outputs") == "loaded"
    assert page.is_visible("#onnx-button")
    assert page.is_visible("#continue-training summary")
    assert page.locator("#artifacts a:has-text('model.safetensors')").count() == 1
    assert page.locator("#artifacts a:has-text('MODEL_CARD.md')").count() >= 1
    # The swapped-in ONNX button works (export.js binds to the new one).
    page.click("#onnx-button")
    page.wait_for_selector("#artifacts a:has-text('model.onnx')", timeout=120_000)
    page.click("#try-link")
    page.wait_for_url(f"**/jobs/{job}/try/")
    assert page.errors == []


def test_a_cancelled_job_offers_its_last_checkpoint_without_a_reload(page, stack, dataset):
    sign_in(page, stack)
    job = queue(stack, dataset, epochs=2000, batch_size=1)
    page.goto(stack.url(f"/jobs/{job}/"))
    page.wait_for_selector("#samples .sample-item", timeout=120_000)  # an epoch ended: a checkpoint exists
    page.evaluate("window.sameDocument = true")
    assert page.locator("#checkpoint-link").count() == 0
    assert stack.api("alice").post(stack.url(f"/api/jobs/{job}/cancel/")).status_code in (200, 202)
    page.wait_for_selector("#job-status.cancelled", timeout=60_000)
    page.wait_for_selector("#checkpoint-link", timeout=15_000)
    assert page.evaluate("window.sameDocument") is True
    assert page.locator("#try-link").count() == 0
    resp = page.request.get(stack.url(page.get_attribute("#checkpoint-link", "href")))
    assert resp.status == 200 and len(resp.body()) > 1000
    assert resp.headers["content-disposition"].startswith("attachment")
    assert stack.api("bob").get(stack.url(f"/jobs/{job}/checkpoint/"), allow_redirects=False).status_code in (302, 404)
    assert page.errors == []
