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


def wait_text_changes(page, selector: str, old: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (now := page.inner_text(selector)) != old:
            return now
        page.wait_for_timeout(100)
    raise AssertionError(f"{selector} stayed {old!r}")


def chart_series(page, name: str) -> int:
    """Series of a chart that hold points (Chart.js keeps them on the canvas' chart object)."""
    return page.eval_on_selector(f"#chart-{name}",
                                 "c => Chart.getChart(c).data.datasets.filter(d => d.data.length).length")


def chart_labels(page, name: str) -> str:
    return page.eval_on_selector(f"#chart-{name}", "c => Chart.getChart(c).data.datasets.map(d => d.label).join('|')")


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
    assert "running for" in page.inner_text("#job-duration")
    # The log streams in while the job runs (the page opened before the job started).
    page.wait_for_selector("#log li:has-text('training on cpu')", timeout=30_000)
    # Samples appear after the first epoch and are replaced every epoch.
    page.wait_for_selector("#samples .sample-item", timeout=60_000)
    epoch_label = page.inner_text("#samples-epoch")
    wait_text_changes(page, "#samples-epoch", epoch_label)
    assert page.locator("#samples .sample-item .prediction").count() >= 1
    # the adaptive defaults pick the best epoch by validation loss (models_zoo/defaults.py)
    assert "Best validation loss" in page.inner_text("#job-best")
    # Every chart has its series: loss, the task's metric, learning rate, throughput.
    for chart in ("loss", "metric", "lr", "speed"):
        assert chart_series(page, chart) >= 1, chart
    assert chart_series(page, "loss") == 2  # train and validation
    assert "accuracy" in page.inner_text("#metric-select")
    # Smoothing and log scale from the keyboard.
    page.focus("#smoothing")
    for _ in range(60):
        page.keyboard.press("ArrowRight")
    assert page.inner_text("#smoothing-value") == "0.60"
    assert "(smoothed)" in chart_labels(page, "loss")
    page.focus("#log-loss")
    page.keyboard.press("Space")
    assert page.is_checked("#log-loss")
    assert page.eval_on_selector("#chart-loss", "c => Chart.getChart(c).options.scales.y.type") == "logarithmic"
    page.keyboard.press("Space")
    page.screenshot(path=str(screenshots / "job-running.png"), full_page=True)

    page.wait_for_selector("#job-status.succeeded", timeout=120_000)
    page.wait_for_selector(".toasts a.toast.succeeded")  # the finish is announced on every open page
    page.wait_for_selector("#samples .sample-item")
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
    heat = page.eval_on_selector_all("#confusion td", "tds => tds.map(td => td.style.getPropertyValue('--heat'))")
    assert all(h for h in heat) and max(map(float, heat)) == 1.0  # the heat map is shaded by count
    hparams = page.inner_text("#hparams")
    # the optimizer was left to the adaptive defaults (models_zoo/defaults.py): AdamW
    for name, value in (("epochs", "40"), ("batch_size", "4"), ("optimizer", "adamw")):
        assert page.locator(f"#hparams tr:has(th:text-is('{name}')) td").inner_text() == value, (name, hparams)
    page.screenshot(path=str(screenshots / "job-finished.png"), full_page=True)

    # The model card: dataset, split, settings, metrics, versions, seed.
    card = page.request.get(stack.url(page.get_attribute("#artifacts a:has-text('MODEL_CARD.md')", "href")))
    assert card.status == 200 and card.headers["content-disposition"].startswith("attachment")
    text = card.text()
    for needle in ("- dataset: e2e-data", "seeded random split", "- epochs: 40", "- seed: ",
                   "## Validation metrics", "- accuracy: ", "torch "):
        assert needle in text, needle

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
    row = page.locator(f"tr[data-job='{job_id}']")
    assert row.locator("[data-field=best]").inner_text().startswith("loss ")  # the monitored metric: validation loss by default
    assert row.locator("[data-field=duration]").inner_text().endswith("s")
    assert "worker@" in row.locator("[data-field=worker]").inner_text()
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
    # Another open page of the same user (the jobs list) is told when the job ends (a toast).
    # Not the job page itself: cancelling reloads it, and the job may end before it reconnects.
    other = page.context.new_page()
    other.goto(stack.url("/jobs/"))
    other.wait_for_selector("body[data-notify=live]")
    page.once("dialog", lambda d: d.accept())  # "Cancel this job?"
    page.click("#cancel-button")
    page.wait_for_selector("#job-status.cancelled", timeout=30_000)
    other.wait_for_selector(".toasts a.toast.cancelled:has-text('was cancelled')")
    other.close()
    # Light from the system setting (this context's default; the dark case is tested on the list).
    assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") is False
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(247, 247, 248)"
    assert page.is_hidden("#cancel-form")
    assert page.is_visible("#delete-form")
    page.wait_for_selector("#log li:has-text('cancel requested')")
    # Delete, from the page, after confirming.
    job_id = page.get_attribute("#job-page", "data-job")
    page.once("dialog", lambda d: d.accept())
    page.click("#delete-button")
    page.wait_for_url("**/jobs/")
    assert page.locator(f"tr[data-job='{job_id}']").count() == 0
    assert stack.api("alice").get(stack.url(f"/api/jobs/{job_id}/")).status_code == 404
    assert page.errors == []


def test_other_user_cannot_open_the_job_page(page, stack, tmp_path):
    api = stack.api("alice")
    job = api.get(stack.url("/api/jobs/")).json()["jobs"]
    sign_in(page, stack, "bob")
    if job:
        resp = page.goto(stack.url(f"/jobs/{job[0]['id']}/"))
        assert resp.status == 404


def test_page_reconnects_after_web_server_restart_without_gaps(page, stack, tmp_path):
    sign_in(page, stack)
    upload_dataset(page, stack, tmp_path, "e2e-restart")
    start_job(page, epochs=30, batch_size=4)
    page.wait_for_selector("#job-status.running", timeout=60_000)
    wait_points_above(page, 2)
    stack.stop("web")
    deadline = time.monotonic() + 15
    while page.inner_text("#conn-state") == "live" and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert page.inner_text("#conn-state") == "reconnecting…"
    page.wait_for_timeout(1500)  # the job keeps training and storing events meanwhile
    stack.start_web()
    page.wait_for_selector("#job-status.succeeded", timeout=240_000)  # a bound, not a timing: loaded CI machines
    job_id = page.get_attribute("#job-page", "data-job")
    events = page.request.get(stack.url(f"/api/jobs/{job_id}/events/?after=0")).json()["events"]
    page.wait_for_timeout(300)
    assert points(page) == sum(1 for e in events if e["kind"] == "metric")
    assert int(page.get_attribute("#job-page", "data-last-seq")) == events[-1]["seq"]
    # ... and each series on the chart has exactly its events' points, the log each line once.
    for split in ("train", "val"):
        plotted = page.eval_on_selector("#chart-loss", f"c => (Chart.getChart(c).data.datasets.find(d => d.label.startsWith('{split} ')) || {{data: []}}).data.length")
        assert plotted == sum(1 for e in events if e["kind"] == "metric" and e["split"] == split)
    assert page.locator("#log li").count() == sum(1 for e in events if e["kind"] == "log")
    assert page.get_attribute("#charts", "data-downsampled") == "false"


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
    table = page.inner_text("#compare-table") + page.inner_text("#metrics-table")  # settings, then metrics
    assert "sgd_momentum" in table and "final accuracy" in table
    page.screenshot(path=str(screenshots / "compare.png"), full_page=True)
    assert page.errors == []


def api_dataset(stack, tmp_path, user="alice", name="list-data") -> str:
    api = stack.api(user)
    with open(write_separable_csv(tmp_path / f"{name}.csv", n=400), "rb") as f:
        ds = api.post(stack.url("/api/datasets/"), files={"file": (f"{name}.csv", f)}, data={"name": name}).json()
    stack.wait_dataset(api, ds["id"])
    return ds["id"]


def test_jobs_list_live_filters_keyboard_narrow_and_dark(browser, stack, tmp_path):
    api = stack.api("alice")
    ds = api_dataset(stack, tmp_path)
    context = browser.new_context(viewport={"width": 390, "height": 800}, color_scheme="dark")
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        sign_in(page, stack)
        # Dark from the system setting.
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 17, 21)"
        long = api.post(stack.url("/api/jobs/"), json={"dataset": ds, "architecture": "mlp", "name": "long-list-job",
                                                      "train_config": {"epochs": 2000, "batch_size": 1}}).json()["id"]
        row = page.locator(f"tr[data-job='{long}']")
        row.wait_for(timeout=30_000)  # appears without a reload
        row.locator(".badge.running").wait_for(timeout=60_000)
        # Worker, progress and ETA follow the running job.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                "ETA" in row.locator("[data-field=progress-text]").inner_text()
                and row.locator("[data-field=progress]").evaluate("e => e.value") > 0):
            page.wait_for_timeout(200)
        assert "ETA" in row.locator("[data-field=progress-text]").inner_text()
        assert "worker@" in row.locator("[data-field=worker]").inner_text()
        # Narrow window: no sideways scrolling; each job is a card.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        # Keyboard: the search box is reachable by Tab, and filters as you type.
        for _ in range(30):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "filter-q":
                break
        assert page.evaluate("document.activeElement.id") == "filter-q"
        page.keyboard.type("no-such-job")
        page.wait_for_selector("tr.empty:has-text('No jobs match')")
        assert "q=no-such-job" in page.url
        page.fill("#filter-q", "long-list")
        row.wait_for()
        page.select_option("#filter-status", "succeeded")
        row.wait_for(state="detached")
        page.select_option("#filter-status", "running")
        row.wait_for()
        assert page.locator("tr[data-job]").count() == 1
        # Cancelled elsewhere (the API): the row follows without a reload, and leaves the
        # "running" filter.
        page.select_option("#filter-status", "")
        api.post(stack.url(f"/api/jobs/{long}/cancel/"))
        row.locator(".badge.cancelled").wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "narrow-dark.png"), full_page=True)
        assert errors == []
    finally:
        context.close()


BIG_HISTORY_SCRIPT = """
N = __N__
import math
from django.contrib.auth.models import User
from webapp.jobs.models import Job, JobEvent
alice = User.objects.get(username="alice")
job = Job.objects.create(owner=alice, name="long-history", architecture="mlp", status="succeeded",
                         train_config={"epochs": 100}, epoch=100, step=N, total_steps=N)
rows, seq = [], 0
for i in range(N):
    seq += 1
    rows.append(JobEvent(job=job, seq=seq, kind="metric", data={"split": "train", "step": i + 1,
        "epoch": (i + 1) / (N / 100), "values": {"loss": 2 / math.sqrt(i + 1) + 0.05 * math.sin(i), "lr": 0.001,
        "samples_per_s": 1000.0 + i % 97}}))
    if (i + 1) % (N // 100) == 0:
        seq += 1
        rows.append(JobEvent(job=job, seq=seq, kind="metric", data={"split": "val", "step": i + 1,
            "epoch": (i + 1) // (N // 100), "values": {"loss": 1 / math.sqrt(i + 1), "accuracy": 0.9}}))
seq += 1
rows.append(JobEvent(job=job, seq=seq, kind="status", data={"status": "succeeded"}))
JobEvent.objects.bulk_create(rows, batch_size=5000)
Job.objects.filter(pk=job.pk).update(last_seq=seq)
print("JOB=" + str(job.pk))
"""


def test_job_with_200k_points_opens_downsampled(page, stack):
    n = 200_000
    out = stack.manage("shell", "-c", BIG_HISTORY_SCRIPT.replace("__N__", str(n))).stdout
    job_id = out.split("JOB=", 1)[1].split()[0]
    sign_in(page, stack)
    started = time.monotonic()
    page.goto(stack.url(f"/jobs/{job_id}/"))
    deadline = time.monotonic() + 60
    while page.get_attribute("#charts", "data-downsampled") != "true" and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    loaded = time.monotonic() - started
    assert page.get_attribute("#charts", "data-downsampled") == "true"
    train = page.eval_on_selector(
        "#chart-loss", "c => Chart.getChart(c).data.datasets.find(d => d.label.startsWith('train')).data.length")
    val = page.eval_on_selector(
        "#chart-loss", "c => Chart.getChart(c).data.datasets.find(d => d.label.startsWith('val')).data.length")
    print(f"job page with {n} points: history drawn in {loaded:.2f} s, {train} train-loss points, {val} val points")
    assert train <= 1000 and val == 100  # each long series at most 1000 points; short ones whole
    assert "200,100 points" in page.inner_text("#history-note")  # 200k train + 100 val
    # Still responsive: the controls redraw at once.
    page.fill("#smoothing", "0.9")
    page.dispatch_event("#smoothing", "input")
    assert page.inner_text("#smoothing-value") == "0.90"
    page.check("#log-loss")
    assert page.errors == []


def test_sample_gallery_shows_images_texts_and_generated_text(page, stack, tmp_path):
    from tests import datagen

    api = stack.api("alice")
    cases = {
        "image": (datagen.digits_png_zip(tmp_path / "digits.zip", limit=300), "cnn"),
        "text": (datagen.sentiment_jsonl(tmp_path / "reviews.jsonl", n=200), "rnn"),
        "corpus": (datagen.repetitive_corpus(tmp_path / "verses.txt", repeats=40), "gpt"),
    }
    jobs = {}
    for kind, (path, arch) in cases.items():
        with open(path, "rb") as f:
            ds = api.post(stack.url("/api/datasets/"), files={"file": (path.name, f)},
                          data={"kind": kind, "name": f"gallery {kind}"}).json()
        assert stack.wait_dataset(api, ds["id"], timeout=120)["status"] == "ready"
        jobs[kind] = api.post(stack.url("/api/jobs/"), json={
            "dataset": ds["id"], "architecture": arch, "name": f"gallery {kind}",
            "train_config": {"epochs": 1, "batch_size": 32}}).json()["id"]
    sign_in(page, stack)
    for kind, job_id in jobs.items():
        assert stack.wait_job(api, job_id, timeout=300)["status"] == "succeeded"
        page.goto(stack.url(f"/jobs/{job_id}/"))
        page.wait_for_selector("#samples .sample-item")
        page.locator("#samples-card").screenshot(path=str(tmp_path / f"gallery-{kind}.png"))
        if kind == "image":
            assert page.locator("#samples.gallery img.sample").count() >= 1
            assert page.get_attribute("#samples img.sample", "src").startswith("data:image/png;base64,")
            assert "truth" in page.inner_text("#samples .sample-item")
            assert page.is_visible("#confusion-card") and page.locator("#confusion tr").count() == 11  # 10 digits + head
        elif kind == "text":
            assert page.locator("#samples .sample-text").count() >= 1
            assert "predicted" in page.inner_text("#samples .sample-item")
        else:
            assert page.locator("#samples pre.generated .completion").count() >= 1
            assert page.inner_text("#metric-caption") == "Perplexity"
            assert page.inner_text("#speed-caption") == "Throughput (tokens/s)"
    assert page.errors == []
