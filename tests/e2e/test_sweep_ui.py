"""Real Chromium through the sweep UI: start a sweep from the form, watch its trials arrive on
the sweep page (it follows the running sweep by itself), read the parallel-coordinates view, and
promote the best trial: the clone form opens with its settings."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.test_ui_flow import sign_in, upload_dataset

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

SPACE = {"train.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}


def trial_states(page) -> list[str]:
    return page.eval_on_selector_all("#trials-table tbody tr[data-state]", "rows => rows.map(r => r.dataset.state)")


def test_create_watch_compare_promote(page, stack, tmp_path, screenshots):
    sign_in(page, stack)
    upload_dataset(page, stack, tmp_path, "sweep-data")
    dataset_id = page.url.rstrip("/").rsplit("/", 1)[-1]

    page.goto(stack.url(f"/sweeps/new/?dataset={dataset_id}&architecture=mlp"))
    page.fill("input[name=name]", "browser sweep")
    page.select_option("#sweep-form select[name=dataset]", dataset_id)
    page.select_option("#sweep-form select[name=metric]", "accuracy")
    page.fill("input[name=budget]", "3")
    page.fill("input[name=concurrency]", "1")
    page.select_option("#sweep-form select[name=pruner]", "none")
    page.fill("#space", json.dumps(SPACE))
    page.fill("textarea[name=model_config]", json.dumps({"hidden_sizes": [8]}))
    page.fill("textarea[name=train_config]", json.dumps({"epochs": 1, "batch_size": 32}))
    page.click("#sweep-submit")
    page.wait_for_url("**/sweeps/*-*/")
    sweep_id = page.url.rstrip("/").rsplit("/", 1)[-1]

    # The page follows the sweep without a manual reload: trials arrive one at a time
    # (concurrency 1) until all three are complete and the sweep is finished.
    seen: list[list[str]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            states = trial_states(page)
            status = page.inner_text("#sweep-status")
        except Exception:  # the page is reloading itself
            page.wait_for_timeout(200)
            continue
        if not seen or states != seen[-1]:
            seen.append(states)
        if states == ["complete"] * 3 and status == "Finished":
            break
        page.wait_for_timeout(250)
    else:
        raise AssertionError(f"the sweep page showed {seen}")
    assert len(seen) >= 2, seen  # it showed an unfinished state before the finished one
    assert seen[0] != ["complete"] * 3, seen

    # Parallel coordinates: one line per complete trial, the best drawn thick, axes named.
    page.locator("#parallel").scroll_into_view_if_needed()
    assert page.locator("#parallel svg polyline").count() == 3
    assert page.locator("#parallel svg polyline[stroke-width='3']").count() == 1
    labels = page.eval_on_selector_all("#parallel svg text", "ts => ts.map(t => t.textContent)")
    assert labels == ["train.learning_rate", "accuracy"]
    page.screenshot(path=str(screenshots / "sweep.png"), full_page=True)

    sweep = page.request.get(stack.url(f"/api/sweeps/{sweep_id}/")).json()
    best = sweep["best"]
    best_job = page.request.get(stack.url(f"/api/jobs/{best['job']}/")).json()
    page.click("#promote-form button")
    page.wait_for_url(f"**/jobs/new/?clone={best['job']}")
    assert page.input_value("input[name=tc_epochs]") == "1"
    assert page.input_value("input[name=tc_batch_size]") == "32"
    assert float(page.input_value("input[name=tc_learning_rate]")) == pytest.approx(best["params"]["train.learning_rate"])
    assert page.input_value("input[name=m_mlp__hidden_sizes]") == "8"
    # The clone keeps every stored setting as the user's own: nothing is re-derived on submit.
    assert page.input_value("input[name=tc_optimizer], select[name=tc_optimizer]") == best_job["train_config"]["optimizer"]
    assert page.input_value("input[name=auto_fields]") == ""
    page.click("button:has-text('Queue job')")
    page.wait_for_selector("#job-page")
    new_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    new = page.request.get(stack.url(f"/api/jobs/{new_id}/")).json()
    assert new["train_config"] == best_job["train_config"] and new["model_config"] == best_job["model_config"]
    assert not page.errors, page.errors
