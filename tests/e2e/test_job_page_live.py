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


def chart(page, name: str, expr: str):
    return page.eval_on_selector(f"#chart-{name}", f"c => {{ const ch = Chart.getChart(c); return {expr}; }}")


def test_a_queued_job_shows_no_metrics_yet_instead_of_empty_charts(page, stack, dataset):
    sign_in(page, stack)
    api = stack.api("alice")
    busy = queue(stack, dataset, epochs=2000, batch_size=1)
    waiting = queue(stack, dataset, epochs=1)
    try:
        stack.wait_job(api, busy, statuses=("running",), timeout=60)
        page.goto(stack.url(f"/jobs/{waiting}/"))
        page.wait_for_selector("#conn-state:has-text('live')")
        assert page.get_attribute("#job-status", "class").split()[-1] == "queued"
        for name in ("loss", "metric", "lr", "speed"):
            assert page.get_attribute(f"#figure-{name}", "data-empty") == "true"
            assert page.is_visible(f"#figure-{name} .chart-empty:has-text('No metrics yet')")
            assert page.eval_on_selector(f"#chart-{name}", "c => getComputedStyle(c).visibility") == "hidden"
    finally:
        for job in (waiting, busy):
            api.post(stack.url(f"/api/jobs/{job}/cancel/"))
    assert page.errors == []


def test_charts_zoom_pan_hover_axes_and_export(page, stack, dataset, tmp_path):
    api = stack.api("alice")
    job = queue(stack, dataset, epochs=6, batch_size=8)
    assert stack.wait_job(api, job, timeout=180)["status"] == "succeeded"
    sign_in(page, stack)
    page.goto(stack.url(f"/jobs/{job}/"))
    for _ in range(100):
        if page.get_attribute("#charts", "data-points") != "0":
            break
        page.wait_for_timeout(100)
    assert page.get_attribute("#figure-loss", "data-empty") == "false"
    page.wait_for_timeout(300)
    full = chart(page, "loss", "[ch.scales.x.min, ch.scales.x.max]")
    area = chart(page, "loss", "ch.chartArea")
    box = page.locator("#chart-loss").bounding_box()
    y = box["y"] + (area["top"] + area["bottom"]) / 2

    # Hover: every series at that x (train and validation loss), in one tooltip.
    page.mouse.move(box["x"] + area["left"] + (area["right"] - area["left"]) * 0.5, y)
    page.wait_for_timeout(200)
    assert chart(page, "loss", "ch.tooltip.dataPoints.map(p => p.dataset.label)") == ["train loss", "val loss"]

    # Drag to zoom: all four charts show the dragged range; the reset button appears.
    x1 = box["x"] + area["left"] + (area["right"] - area["left"]) * 0.3
    x2 = box["x"] + area["left"] + (area["right"] - area["left"]) * 0.6
    page.mouse.move(x1, y)
    page.mouse.down()
    page.mouse.move((x1 + x2) / 2, y, steps=3)
    page.mouse.move(x2, y, steps=3)
    page.mouse.up()
    page.wait_for_timeout(200)
    zoomed = chart(page, "loss", "[ch.scales.x.min, ch.scales.x.max]")
    width = full[1] - full[0]
    assert abs(zoomed[0] - (full[0] + 0.3 * width)) < 0.02 * width, (full, zoomed)
    assert abs(zoomed[1] - (full[0] + 0.6 * width)) < 0.02 * width, (full, zoomed)
    assert chart(page, "lr", "[ch.scales.x.min, ch.scales.x.max]") == zoomed
    assert page.is_visible("#reset-loss") and page.get_attribute("#charts", "data-zoomed") == "true"
    # Ctrl + wheel zooms further in around the pointer; Shift + drag pans.
    page.mouse.move((x1 + x2) / 2, y)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)
    page.keyboard.up("Control")
    page.wait_for_timeout(200)
    wheeled = chart(page, "loss", "[ch.scales.x.min, ch.scales.x.max]")
    assert wheeled[1] - wheeled[0] < 0.8 * (zoomed[1] - zoomed[0])
    page.keyboard.down("Shift")
    page.mouse.move(x2, y)
    page.mouse.down()
    page.mouse.move(x1, y, steps=4)
    page.mouse.up()
    page.keyboard.up("Shift")
    page.wait_for_timeout(200)
    panned = chart(page, "loss", "[ch.scales.x.min, ch.scales.x.max]")
    assert panned[0] > wheeled[0] and abs((panned[1] - panned[0]) - (wheeled[1] - wheeled[0])) < 1e-6 * width
    page.click("#reset-loss")
    page.wait_for_timeout(200)
    assert chart(page, "loss", "[ch.scales.x.min, ch.scales.x.max]") == full
    assert page.is_hidden("#reset-loss")

    # Learning-rate ticks: no two neighbours read the same.
    labels = chart(page, "lr", "ch.scales.y.ticks.map(t => t.label)")
    assert all(a != b for a, b in zip(labels, labels[1:])), labels

    # X axis by epoch, then by wall time.
    page.select_option("#x-axis", "epoch")
    page.wait_for_timeout(200)
    assert chart(page, "loss", "ch.options.scales.x.title.text") == "epoch"
    assert 5 <= chart(page, "loss", "ch.scales.x.max") <= 6.5
    page.select_option("#x-axis", "time")
    page.wait_for_timeout(200)
    assert chart(page, "loss", "ch.options.scales.x.title.text").startswith("wall time")
    assert chart(page, "loss", "ch.scales.x.ticks.map(t => t.label)")[-1].endswith("s")
    page.select_option("#x-axis", "step")

    # CSV: the chart's whole history, exactly as the API stores it.
    events, after = [], 0
    while True:
        body = api.get(stack.url(f"/api/jobs/{job}/events/?after={after}")).json()
        events += body["events"]
        if not body["events"] or body["events"][-1]["seq"] >= body["last_seq"]:
            break
        after = body["events"][-1]["seq"]
    for name, key in (("loss", "loss"), ("lr", "lr")):
        with page.expect_download() as info:
            page.click(f"#csv-{name}")
        lines = open(info.value.path()).read().splitlines()
        assert lines[0] == f"seq,split,step,epoch,wall_time,{key}"
        rows = [line.split(",") for line in lines[1:]]
        expected = [e for e in events if e["kind"] == "metric" and e["split"] in ("train", "val")
                    and isinstance(e["values"].get(key), (int, float))]
        assert len(rows) == len(expected) > 3  # how many train points there are depends on the speed
        for row, e in zip(rows, expected):
            assert (int(row[0]), row[1], int(row[2]), float(row[3]), float(row[4]), float(row[5])) == (
                e["seq"], e["split"], e["step"], e["epoch"], e["t"], e["values"][key])
        assert info.value.suggested_filename.endswith(f"-{key}.csv")
    with page.expect_download() as info:
        page.click("#png-loss")
    assert open(info.value.path(), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert page.errors == []
