"""Chromium on the real stack: the jobs list's tags, search, sort and bulk archive; the compare
page with 20 jobs (every drawn series a colour of its own) and grouped by a setting (mean ± std
bands across seeds). The jobs are rows with stored validation events, made in the stack's own
database (twenty trainings would take this machine many minutes and show nothing more here)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_ui_flow import sign_in

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

SEED = """
import json, math
from django.contrib.auth.models import User
from webapp.datasets.models import Dataset
from webapp.jobs.events import append_events
from webapp.jobs.models import Job, JobTag
u = User.objects.create_user("dora", "dora@example.com", %r)
ds = Dataset.objects.create(owner=u, name="dora-table", original_filename="t.csv", size_bytes=10, status="ready",
                            info={"kind": "tabular", "task": "classification", "classes": ["a", "b"]})
ids = []
for i in range(24):
    lr = 0.01 if i %% 2 else 0.001
    seed = i // 2
    j = Job.objects.create(owner=u, dataset=ds, name=f"dora-{i:02d}", architecture="mlp", status="succeeded",
                           model_config={"hidden_sizes": [16]},
                           train_config={"epochs": 8, "learning_rate": lr, "seed": seed, "batch_size": 16})
    events = []
    for epoch in range(1, 9):
        acc = 0.5 + 0.4 * (1 - math.exp(-epoch / (2 if lr == 0.01 else 4))) + 0.01 * ((seed * 7 + epoch) %% 5)
        events.append(("metric", {"split": "val", "step": epoch * 10, "epoch": epoch,
                                  "values": {"loss": round(1.2 - acc, 4), "accuracy": round(acc, 4)}}))
    events.append(("status", {"status": "succeeded"}))
    append_events(j.pk, events, metrics=dict(events[-2][1]["values"]))
    if i < 6:
        JobTag.objects.create(job=j, name="baseline")
    ids.append(str(j.pk))
print("IDS=" + json.dumps(ids))
"""


@pytest.fixture(scope="module")
def dora(stack):
    from tests.stack import PASSWORD

    out = stack.manage("shell", "-c", SEED % PASSWORD).stdout
    return json.loads(out.split("IDS=", 1)[1].strip().splitlines()[0])


def names_shown(page):
    return page.eval_on_selector_all("#jobs-table tbody tr[data-job] [data-field=name]", "els => els.map(e => e.textContent)")


def wait_rows(page, n):
    page.wait_for_function("n => document.querySelectorAll('#jobs-table tbody tr[data-job]').length === n", arg=n,
                           timeout=20_000)


def test_tags_search_sort_and_bulk_archive_on_the_jobs_list(page, stack, dora):
    sign_in(page, stack, user="dora")
    assert len(names_shown(page)) == 24
    assert page.locator("#jobs-table tr[data-job] .tag:has-text('baseline')").count() == 6
    # Search in the database, as you type: a setting and a metric, then a tag.
    page.fill("#filter-q", "learning_rate<0.005 accuracy>0.8")
    page.wait_for_function("() => new URLSearchParams(location.search).get('q') === 'learning_rate<0.005 accuracy>0.8'")
    wait_rows(page, 12)
    page.fill("#filter-q", "tag:baseline")
    wait_rows(page, 6)
    # A search that cannot be read says why and keeps the rows.
    page.fill("#filter-q", "lerning_rate<0.1")
    page.wait_for_selector("#search-error:not([hidden])")
    assert "did you mean learning_rate" in page.inner_text("#search-error")
    page.fill("#filter-q", "")
    wait_rows(page, 24)
    page.wait_for_selector("#search-error", state="hidden")
    # Sort by name, then reversed (a header link, kept in the address).
    page.click("#jobs-table th a[data-sort=name]")
    page.wait_for_url("**sort=name**")
    assert names_shown(page) == sorted(names_shown(page)) and names_shown(page)[0] == "dora-00"
    page.click("#jobs-table th a[data-sort=name]")
    page.wait_for_url("**sort=-name**")
    assert names_shown(page)[0] == "dora-23"
    # Bulk archive two ticked jobs: gone from the default list, there under the archived filter.
    page.check("input[name=ids][value='%s']" % dora[23])
    page.check("input[name=ids][value='%s']" % dora[22])
    page.click("#bulk-archive")
    page.wait_for_selector(".messages >> text=archive: 2 jobs done", timeout=20_000)
    assert "sort=-name" in page.url  # back on the same list
    assert len(names_shown(page)) == 22 and "dora-23" not in names_shown(page)
    page.select_option("#filter-archived", "only")
    wait_rows(page, 2)
    assert sorted(names_shown(page)) == ["dora-22", "dora-23"]
    # The one refusal was the unreadable search's 400 (the browser logs it too).
    unexpected = [e for e in page.errors if "lerning_rate" not in e and "status of 400" not in e]
    assert unexpected == [] and any("HTTP 400" in e and "lerning_rate" in e for e in page.errors), page.errors


def series_colors(page, canvas):
    return page.eval_on_selector(f"#{canvas}", "c => Chart.getChart(c).data.datasets.filter(d => !d.band).map(d => d.borderColor)")


def test_compare_twenty_jobs_each_in_its_own_colour(page, stack, dora):
    sign_in(page, stack, user="dora")
    page.goto(stack.url("/jobs/compare/?" + "&".join(f"ids={i}" for i in dora[:20])))
    page.wait_for_selector("#compare-charts[data-ready='1']", timeout=60_000)
    assert page.inner_text("h1").startswith("Compare 20 jobs")
    for canvas in ("compare-loss", "compare-metric"):
        colors = series_colors(page, canvas)
        assert len(colors) == 20 and len(set(colors)) == 20, colors
    counts = page.eval_on_selector("#compare-loss", "c => Chart.getChart(c).data.datasets.map(d => d.data.length)")
    assert counts == [8] * 20
    swatches = page.eval_on_selector_all("#compare-table thead .swatch", "els => els.map(e => e.style.getPropertyValue('--swatch'))")
    assert swatches == series_colors(page, "compare-loss")
    # learning_rate differs: bold; architecture does not. One best cell per metrics row.
    assert page.locator("#compare-table tr.differs th:text-is('learning_rate')").count() == 1
    assert page.locator("#compare-table tr:not(.differs) th:text-is('architecture')").count() == 1
    assert page.locator("#metrics-table tr[data-metric='final accuracy'] td.best").count() >= 1
    assert page.errors == [], page.errors


def test_compare_grouped_by_a_setting_draws_mean_and_std_bands(page, stack, dora, screenshots):
    sign_in(page, stack, user="dora")
    page.goto(stack.url("/jobs/compare/?" + "&".join(f"ids={i}" for i in dora[:12])))
    page.select_option("#group-by", "learning_rate")
    page.click("#group-apply")
    page.wait_for_url("**group=learning_rate**")
    page.wait_for_selector("#compare-charts[data-ready='1']", timeout=60_000)
    sets = page.eval_on_selector("#compare-metric", """c => Chart.getChart(c).data.datasets.map(d => ({
        label: d.label, band: !!d.band, fill: d.fill, color: d.borderColor, ys: d.data.map(p => p.y)}))""")
    means = [s for s in sets if not s["band"]]
    assert [m["label"] for m in means] == ["learning_rate = 0.001 (mean of 6)", "learning_rate = 0.01 (mean of 6)"]
    assert len({m["color"] for m in means}) == 2
    bands = [s for s in sets if s["band"]]
    assert len(bands) == 4 and [b["fill"] for b in bands] == [False, "-1", False, "-1"]
    upper, lower, mean = sets[0]["ys"], sets[1]["ys"], sets[2]["ys"]
    assert all(lo <= m <= up for lo, m, up in zip(lower, mean, upper)) and any(up > lo for lo, up in zip(lower, upper))
    page.screenshot(path=str(screenshots / "compare-bands.png"), full_page=True)
    # Saved as a view, re-opened from its own address.
    page.fill("#view-name", "lr groups")
    page.click("#save-view")
    page.wait_for_url("**/jobs/compare/views/**")
    page.wait_for_selector("#compare-charts[data-ready='1']", timeout=60_000)
    assert page.input_value("#group-by") == "learning_rate" and "lr groups" in page.inner_text("h1")
    assert page.errors == [], page.errors
