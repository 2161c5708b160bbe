"""Real Chromium on the new-job form: the training fields the user leaves alone show the
defaults that fit the chosen dataset and architecture, each with its reason; an edited field is
the user's own; the server resolves the rest and the job stores what it got."""

from __future__ import annotations

import pytest

from tests.e2e.test_ui_flow import sign_in, upload_dataset

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_the_form_shows_and_sends_the_adaptive_defaults(page, stack, tmp_path):
    sign_in(page, stack)
    upload_dataset(page, stack, tmp_path, "adaptive-data")  # 400 rows: 320 train
    page.click("text=Train a model on this dataset")
    page.wait_for_url("**/jobs/new/**")
    reason = page.locator("[data-reason-for=tc_epochs]")
    reason.wait_for(state="visible")
    assert page.input_value("input[name=tc_epochs]") == "200"  # 320 rows at batch 16: 20 steps an epoch
    assert "320 training rows" in reason.inner_text()
    assert page.input_value("input[name=tc_batch_size]") == "16"
    assert page.input_value("select[name=tc_optimizer]") == "adamw"
    assert page.input_value("select[name=tc_lr_schedule]") == "cosine"


    page.fill("input[name=tc_epochs]", "1")  # the user's own from now on
    assert not reason.is_visible()
    page.fill("input[name=m_mlp__hidden_sizes]", "8")
    page.click("button:has-text('Queue job')")
    page.wait_for_selector("#job-page")
    job_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    tc = page.request.get(stack.url(f"/api/jobs/{job_id}/")).json()["train_config"]
    assert (tc["epochs"], tc["batch_size"], tc["optimizer"], tc["lr_schedule"]) == (1, 16, "adamw", "cosine")
    assert not page.errors, page.errors
