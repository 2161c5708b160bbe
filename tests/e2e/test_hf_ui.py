"""Real Chromium: upload a save_pretrained ZIP on the Models page (sent in chunks by the page),
pick it in the job form for a corpus (with its memory estimate), and watch generated samples
arrive on the job page."""

from __future__ import annotations

import pytest

from tests import datagen, hfmodels
from tests.e2e.test_ui_flow import sign_in

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_upload_a_model_and_fine_tune_it_from_the_browser(stack, page, tmp_path):
    corpus = datagen.repetitive_corpus(tmp_path / "verses.txt", repeats=60)
    model_zip = hfmodels.zip_folder(hfmodels.tiny_gpt2(tmp_path / "gpt", corpus.read_text()), tmp_path / "gpt.zip")
    sign_in(page, stack)

    page.click("nav >> text=Models")
    page.set_input_files("input[type=file]", str(model_zip))
    page.fill("input[name=name]", "browser-gpt")
    page.select_option("select[name=task]", "causal_lm")
    page.click("button:has-text('Upload')")
    page.wait_for_selector("code:has-text('local:browser-gpt')", timeout=60_000)
    for _ in range(120):  # a worker unpacks the ZIP; the row says "extracting…" until then
        if page.locator("text=extracting…").count() == 0:
            break
        page.wait_for_timeout(500)
        page.reload()
    page.screenshot(path=str(tmp_path / "models.png"))

    page.click("nav >> text=Datasets")
    page.set_input_files("input[type=file]", str(corpus))
    page.fill("input[name=name]", "verses")
    page.click("button:has-text('Upload')")
    page.wait_for_selector("text=Train a model on this dataset", timeout=60_000)
    page.click("text=Train a model on this dataset")
    page.wait_for_url("**/jobs/new/**")
    page.select_option("#architecture", "hf_causal_lm")
    # The picker suggests the uploaded model.
    assert page.locator("datalist#m_hf_causal_lm__model-list option[value='local:browser-gpt']").count() == 1
    page.fill("input[name=m_hf_causal_lm__model]", "local:browser-gpt")
    page.fill("input[name=m_hf_causal_lm__block_size]", "32")
    page.fill("input[name=m_hf_causal_lm__prompt]", "the quick")
    page.fill("input[name=tc_epochs]", "3")
    page.fill("input[name=tc_batch_size]", "16")
    page.fill("input[name=tc_learning_rate]", "0.003")
    # The form's memory estimate of this model (its safetensors); no worker here has a GPU, so the
    # minimum GPU memory stays empty (the job must still run on the CPU worker).
    page.wait_for_selector("#memory-estimate:has-text('Estimated GPU memory about')", timeout=10_000)
    assert "no registered worker has a GPU" in page.inner_text("#memory-estimate")
    assert page.input_value("#min-gpu-memory") == "" and page.is_hidden("#memory-warning")
    page.click("button:has-text('Queue job')")
    page.wait_for_selector("#job-page")
    page.wait_for_selector("#samples .generated .completion", timeout=120_000)
    assert page.locator("#samples .prompt").first.inner_text() == "the quick"
    page.wait_for_selector("#artifacts a:has-text('model.zip')", timeout=120_000)
    page.screenshot(path=str(tmp_path / "job.png"), full_page=True)
    assert page.errors == [], page.errors
