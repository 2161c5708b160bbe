"""Real Chromium: forms that fit. The new-job form shows only the settings that apply and updates
live as the optimizer, the schedule, the preset and the dataset change (the schema's
`applies_when`); image datasets start with a CNN; the job stores only what applied. The upload
form shows the options of the kind it detects; its progress says percent and bytes."""

from __future__ import annotations

import pytest

from tests import datagen
from tests.e2e.test_ui_flow import sign_in
from tests.stack import write_separable_csv

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _visible(page, name: str) -> bool:
    return page.locator(f"#job-form label[data-setting={name}]:visible").count() > 0


def _dataset(stack, api, path, kind) -> str:
    with open(path, "rb") as f:
        r = api.post(stack.url("/api/datasets/"), files={"file": (path.name, f)}, data={"kind": kind, "name": path.stem})
    assert r.status_code == 201, r.text
    assert stack.wait_dataset(api, r.json()["id"], timeout=120)["status"] == "ready"
    return r.json()["id"]


def test_only_the_settings_that_apply_are_shown_and_stored(page, stack, tmp_path):
    api = stack.api("alice")
    table = _dataset(stack, api, write_separable_csv(tmp_path / "fit-table.csv", n=200), "tabular")
    images = _dataset(stack, api, datagen.digits_png_zip(tmp_path / "fit-digits.zip", limit=60), "image")
    sign_in(page, stack)
    page.goto(stack.url(f"/jobs/new/?dataset={table}"))
    page.wait_for_selector("[data-reason-for=tc_epochs]:not([hidden])")  # the adaptive defaults arrived
    assert page.input_value("select[name=tc_optimizer]") == "adamw"
    assert not _visible(page, "momentum") and not _visible(page, "nesterov")
    assert page.locator("input[name=tc_momentum]").is_disabled()  # not sent
    page.select_option("select[name=tc_optimizer]", "sgd_momentum")
    assert _visible(page, "momentum") and _visible(page, "nesterov")
    page.select_option("select[name=tc_optimizer]", "rmsprop")
    assert _visible(page, "momentum") and not _visible(page, "nesterov")
    page.select_option("select[name=tc_lr_schedule]", "constant")
    assert not _visible(page, "step_epochs") and not _visible(page, "step_gamma") and _visible(page, "warmup_epochs")
    page.select_option("select[name=tc_lr_schedule]", "step")
    assert _visible(page, "step_epochs") and _visible(page, "step_gamma")
    page.select_option("select[name=tc_lr_schedule]", "onecycle")
    assert not _visible(page, "warmup_epochs")
    # A classification table: no regression loss, no image augmentation; the stack's worker is
    # CPU only: no mixed precision.
    assert _visible(page, "label_smoothing") and not _visible(page, "regression_loss")
    assert not _visible(page, "augment") and not _visible(page, "mixed_precision")
    page.fill("input[name=tc_epochs]", "1")
    page.fill("input[name=m_mlp__hidden_sizes]", "8")
    page.click("button:has-text('Queue job')")
    page.wait_for_selector("#job-page")
    job_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    tc = page.request.get(stack.url(f"/api/jobs/{job_id}/")).json()["train_config"]
    assert tc["optimizer"] == "rmsprop" and tc["lr_schedule"] == "onecycle" and "momentum" in tc
    for name in ("nesterov", "step_epochs", "step_gamma", "warmup_epochs", "regression_loss", "augment",
                 "mixed_precision"):
        assert name not in tc, name
    hparams = page.inner_text("#hparams")
    assert "momentum" in hparams and "nesterov" not in hparams and "step_gamma" not in hparams

    # Images: a CNN to start with; LeNet shows only dropout; augmentation applies.
    page.goto(stack.url("/jobs/new/"))
    page.select_option("select[name=dataset]", images)
    assert page.input_value("#architecture") == "cnn"
    for name in ("channels", "kernel_size", "pooling", "batch_norm", "hidden_size", "dropout"):
        assert _visible(page, name), name
    page.select_option("select[name=m_cnn__preset]", "lenet")
    assert _visible(page, "dropout")
    for name in ("channels", "kernel_size", "pooling", "batch_norm", "hidden_size"):
        assert not _visible(page, name), name
    assert _visible(page, "augment") and _visible(page, "mixup_alpha")
    page.select_option("select[name=tc_augment]", "flip")
    assert not _visible(page, "crop_padding")
    # Back to the table: the user chose nothing, so the architecture follows the dataset again.
    page.select_option("select[name=dataset]", table)
    assert page.input_value("#architecture") == "mlp" and not _visible(page, "augment")
    assert not page.errors, page.errors


def test_the_upload_form_shows_the_detected_kinds_options_and_its_progress(page, stack, tmp_path):
    sign_in(page, stack)
    page.goto(stack.url("/datasets/"))
    label = page.locator("label[data-kinds='image']").first
    assert label.is_visible()  # nothing chosen yet: every option
    page.set_input_files("input[type=file]", str(write_separable_csv(tmp_path / "detect.csv", n=50)))
    page.wait_for_selector("#kind-detected:has-text('Detected: Tabular')")
    assert not label.is_visible() and page.locator("label[data-kinds='tabular sequence']").first.is_visible()
    page.set_input_files("input[type=file]", str(datagen.digits_png_zip(tmp_path / "detect.zip", limit=20)))
    page.wait_for_selector("#kind-detected:has-text('Detected: Images')")
    assert label.is_visible() and not page.locator("label[data-kinds='tabular sequence']").first.is_visible()
    page.select_option("#kind", "corpus")
    assert not label.is_visible() and page.locator("label[data-kinds='corpus']").is_visible()
    page.select_option("#kind", "auto")
    # The progress line as it changes, kept across the page's submit (a MutationObserver writing
    # to sessionStorage, installed before the page's scripts run).
    page.add_init_script("""document.addEventListener("DOMContentLoaded", () => {
      const el = document.getElementById("upload-progress-text");
      if (!el) return;
      new MutationObserver(() => {
        const seen = JSON.parse(sessionStorage.getItem("progress") || "[]");
        seen.push(el.textContent);
        sessionStorage.setItem("progress", JSON.stringify(seen));
      }).observe(el, { childList: true, characterData: true, subtree: true });
    });""")
    page.reload()
    big = write_separable_csv(tmp_path / "big.csv", n=150_000)  # about 5 MB
    page.set_input_files("input[type=file]", str(big))
    page.wait_for_selector("#kind-detected:has-text('Detected: Tabular')")
    page.fill("input[name=name]", "progress-shown")
    page.click("button:has-text('Upload')")
    page.wait_for_selector("#dataset-status", timeout=60_000)
    seen = page.evaluate("() => JSON.parse(sessionStorage.getItem('progress') || '[]')")
    assert seen and all("%" in t and " of " in t and "MB" in t for t in seen), seen
    assert seen[-1].startswith("100% ") and len(set(seen)) >= 2, seen  # it moved, and reached the end
    assert not page.errors, page.errors
