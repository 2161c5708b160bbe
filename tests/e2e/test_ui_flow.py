"""Real Chromium through the real UI: sign in, upload, start a job, watch the chart grow,
download the model; cancel from the page."""

from __future__ import annotations

import json
import struct
import time

import pytest

from tests.stack import PASSWORD, write_separable_csv

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def sign_in(page, stack, user="alice"):
    page.goto(stack.url("/jobs/"))
    assert "/accounts/login/" in page.url  # every page but sign-in needs a login
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs/")


def upload_dataset(page, stack, tmp_path, name):
    page.click("text=Datasets")
    page.set_input_files("input[type=file]", str(write_separable_csv(tmp_path / f"{name}.csv", n=400)))
    page.fill("input[name=name]", name)
    page.click("button:has-text('Upload')")
    page.wait_for_selector("#stat-rows", timeout=60_000)  # the page reloads itself when ingest is done


def start_job(page, epochs: int, batch_size: int):
    page.click("text=Train a model on this dataset")
    page.wait_for_url("**/jobs/new/**")
    page.fill("input[name=tc_epochs]", str(epochs))
    page.fill("input[name=tc_batch_size]", str(batch_size))
    page.fill("input[name=m_mlp__hidden_sizes]", "32,16")
    page.click("button:has-text('Queue job')")
    page.wait_for_selector("#job-page")


def points(page) -> int:
    return int(page.get_attribute("#charts", "data-points"))


def wait_points_above(page, n: int, timeout: float = 30) -> int:
    # Polled from Python: page.wait_for_function would need 'unsafe-eval', which our CSP forbids.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (now := points(page)) > n:
            return now
        page.wait_for_timeout(100)
    raise AssertionError(f"the chart stayed at {points(page)} points")


def test_sign_in_upload_train_watch_download(page, stack, tmp_path, screenshots):
    sign_in(page, stack)
    upload_dataset(page, stack, tmp_path, "e2e-data")
    assert page.inner_text("#stat-rows") == "400"
    assert page.inner_text("#stat-columns") == "4"
    assert page.inner_text("#stat-classes") == "2"
    page.screenshot(path=str(screenshots / "dataset.png"), full_page=True)

    start_job(page, epochs=40, batch_size=4)
    page.wait_for_selector("#job-status.running", timeout=60_000)
    first = wait_points_above(page, 0)
    wait_points_above(page, first)  # and it keeps growing while the job runs
    assert page.inner_text("#conn-state") == "live"
    assert "ETA" in page.inner_text("#job-progress-text")
    page.screenshot(path=str(screenshots / "job-running.png"), full_page=True)

    page.wait_for_selector("#job-status.succeeded", timeout=120_000)
    page.wait_for_selector(".toasts a.toast.succeeded")  # the finish is announced on every open page
    page.wait_for_selector("#samples tbody tr")
    page.wait_for_selector("#artifacts a:has-text('model.safetensors')")
    assert page.eval_on_selector("#job-progress", "e => e.value") == 1
    # The chart holds exactly one point per stored metric event: no gap, no duplicate.
    job_id = page.get_attribute("#job-page", "data-job")
    events = page.request.get(stack.url(f"/api/jobs/{job_id}/events/?after=0")).json()["events"]
    page.wait_for_timeout(300)
    assert points(page) == sum(1 for e in events if e["kind"] == "metric")
    assert int(page.get_attribute("#job-page", "data-last-seq")) == events[-1]["seq"]
    assert page.is_visible("#confusion-card") and page.locator("#confusion td").count() == 4
    assert "training on cpu" in page.inner_text("#log")
    page.screenshot(path=str(screenshots / "job-finished.png"), full_page=True)

    with page.expect_download() as info:
        page.click("#artifacts a:has-text('model.safetensors')")
    path = info.value.path()
    raw = open(path, "rb").read()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    assert any(k.endswith("weight") for k in header)
    assert info.value.suggested_filename == "model.safetensors"

    page.click("text=Jobs")
    page.wait_for_selector(f"tr[data-job='{job_id}'] .badge.succeeded")
    # The list follows a job queued elsewhere (the API) without a reload by the user.
    api = stack.api("alice")
    dataset_id = api.get(stack.url(f"/api/jobs/{job_id}/")).json()["dataset"]
    page.wait_for_timeout(500)  # the user socket is connecting
    other = api.post(stack.url("/api/jobs/"), json={"dataset": dataset_id, "architecture": "mlp",
                                                    "train_config": {"epochs": 1}}).json()["id"]
    page.wait_for_selector(f"tr[data-job='{other}']", timeout=30_000)
    page.wait_for_selector(f"tr[data-job='{other}'] .badge.succeeded", timeout=60_000)
    page.screenshot(path=str(screenshots / "jobs-list.png"), full_page=True)
    assert page.errors == []


def test_cancel_a_running_job_from_its_page(page, stack, tmp_path):
    sign_in(page, stack)
    upload_dataset(page, stack, tmp_path, "e2e-cancel")
    start_job(page, epochs=2000, batch_size=1)
    page.wait_for_selector("#job-status.running", timeout=60_000)
    page.click("#cancel-button")
    page.wait_for_selector("#job-status.cancelled", timeout=30_000)
    assert page.is_hidden("#cancel-form")
    assert page.errors == []


def test_other_user_cannot_open_the_job_page(page, stack, tmp_path):
    api = stack.api("alice")
    job = api.get(stack.url("/api/jobs/")).json()["jobs"]
    sign_in(page, stack, "bob")
    if job:
        resp = page.goto(stack.url(f"/jobs/{job[0]['id']}/"))
        assert resp.status == 404


def test_page_reconnects_after_daphne_restart_without_gaps(page, stack, tmp_path):
    sign_in(page, stack)
    upload_dataset(page, stack, tmp_path, "e2e-restart")
    start_job(page, epochs=60, batch_size=4)
    page.wait_for_selector("#job-status.running", timeout=60_000)
    wait_points_above(page, 2)
    stack.stop("daphne")
    deadline = time.monotonic() + 15
    while page.inner_text("#conn-state") == "live" and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert page.inner_text("#conn-state") == "reconnecting…"
    page.wait_for_timeout(1500)  # the job keeps training and storing events meanwhile
    stack.start_daphne()
    page.wait_for_selector("#job-status.succeeded", timeout=120_000)
    job_id = page.get_attribute("#job-page", "data-job")
    events = page.request.get(stack.url(f"/api/jobs/{job_id}/events/?after=0")).json()["events"]
    page.wait_for_timeout(300)
    assert points(page) == sum(1 for e in events if e["kind"] == "metric")
    assert int(page.get_attribute("#job-page", "data-last-seq")) == events[-1]["seq"]


def test_clone_with_edits_then_compare(page, stack, tmp_path, screenshots):
    sign_in(page, stack)
    upload_dataset(page, stack, tmp_path, "e2e-compare")
    start_job(page, epochs=3, batch_size=16)
    page.wait_for_selector("#job-status.succeeded", timeout=120_000)
    first = page.get_attribute("#job-page", "data-job")
    page.click("#clone-link")
    page.wait_for_url("**/jobs/new/?clone=*")
    assert page.input_value("input[name=tc_epochs]") == "3"
    assert page.input_value("input[name=m_mlp__hidden_sizes]") == "32,16"
    page.fill("input[name=tc_epochs]", "5")
    page.select_option("select[name=tc_optimizer]", "sgd_momentum")
    page.click("button:has-text('Queue job')")
    page.wait_for_selector("#job-status.succeeded", timeout=120_000)
    second = page.get_attribute("#job-page", "data-job")
    assert second != first

    page.click("text=Jobs")
    page.check(f"input[name=ids][value='{first}']")
    page.check(f"input[name=ids][value='{second}']")
    page.click("#compare-button")
    page.wait_for_url("**/jobs/compare/**")
    deadline = time.monotonic() + 20
    while int(page.get_attribute("#compare-charts", "data-points")) < 8 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert int(page.get_attribute("#compare-charts", "data-points")) == 3 + 5  # one point per epoch
    table = page.inner_text("#compare-table")
    assert "sgd_momentum" in table and "final accuracy" in table
    page.screenshot(path=str(screenshots / "compare.png"), full_page=True)
    assert page.errors == []
