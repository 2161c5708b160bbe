"""Chromium through the real stack: try a table model (fill it from a validation row or a pasted
CSV row, typical ranges shown, a failed try clears the old answer) and try many: a CSV of table
rows in, a CSV of predictions out, one per input row, equal to the single tries. An image model's
try shows a preview of the chosen file."""

from __future__ import annotations

import csv
import io

import pytest

from tests import datagen
from tests.e2e.test_ui_flow import sign_in
from tests.integration.test_try_model import train
from tests.stack import write_separable_csv

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _predict(page) -> str:
    """Submit the try form; the top label, once the answer replaced whatever was shown."""
    page.evaluate("() => document.getElementById('try-result').replaceChildren()")
    page.click("#try-submit")
    page.wait_for_selector("#try-top li .label, #try-error:not([hidden])", timeout=60_000)
    return page.inner_text("#try-top li .label") if page.is_visible("#try-top") else ""


def test_try_a_table_model_one_row_and_many(page, stack, tmp_path):
    api = stack.api("alice")
    job = train(stack, api, write_separable_csv(tmp_path / "tm.csv", n=300), "tabular", "mlp", epochs=3, lr=0.01)
    sign_in(page, stack)
    page.goto(stack.url(f"/jobs/{job}/try/"))
    assert "typically " in page.inner_text("label[for=f-1]")  # the column's typical range
    page.select_option("#try-example", "0")
    assert page.input_value("#f-1") != "" and page.input_value("#f-3") != ""
    assert _predict(page) in ("pos", "neg")
    page.fill("#try-paste", "2.5, 1.0, -0.3")
    assert (page.input_value("#f-1"), page.input_value("#f-2"), page.input_value("#f-3")) == ("2.5", "1.0", "-0.3")
    assert _predict(page) == "pos"  # a + b/2 > 0
    page.fill("#try-paste", "1, 2")
    assert "expected 3 values, got 2" in page.inner_text("#try-paste-error")
    # A try that fails leaves no earlier answer on the page.
    page.fill("#f-1", "not a number")
    page.click("#try-submit")
    page.wait_for_selector("#try-error:not([hidden])", timeout=60_000)
    assert "'x1'" in page.inner_text("#try-error") and page.locator("#try-top").count() == 0

    # Try many: a CSV of rows (another order, a label column) -> one prediction per row.
    fresh = write_separable_csv(tmp_path / "many.csv", n=120, seed=11)
    lines = fresh.read_text().splitlines()
    page.set_input_files("#batch-file", str(fresh))
    page.click("#batch-submit")
    link = page.locator("#batch-list li a[data-field=download]").first
    link.wait_for(timeout=120_000)
    assert "120 predictions" in page.inner_text("#batch-list li")
    with page.expect_download() as download:
        link.click()
    out = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert len(out) == len(lines) - 1 == 120
    for i in (0, 57, 119):  # the same answers as single tries in the form
        x1, x2, x3, _ = lines[1 + i].split(",")
        page.fill("#try-paste", f"{x1},{x2},{x3}")
        assert _predict(page) == out[i]["prediction"], i
    # A file the model cannot read: its reason, no download.
    bad = tmp_path / "bad.csv"
    bad.write_text("x1,x2\n1,2\n")
    page.set_input_files("#batch-file", str(bad))
    page.click("#batch-submit")
    page.wait_for_selector("#batch-error:not([hidden])", timeout=60_000)
    assert "lacks the training column(s) 'x3'" in page.inner_text("#batch-error")
    assert not page.errors, page.errors


def test_an_image_try_shows_a_preview(page, stack, tmp_path):
    import zipfile

    api = stack.api("alice")
    source = datagen.digits_png_zip(tmp_path / "prev.zip", limit=60)
    job = train(stack, api, source, "image", "cnn", epochs=1)
    with zipfile.ZipFile(source) as z:
        name = next(n for n in z.namelist() if n.endswith(".png"))
        (tmp_path / "one.png").write_bytes(z.read(name))
    sign_in(page, stack)
    page.goto(stack.url(f"/jobs/{job}/try/"))
    assert not page.is_visible("#try-preview-box")
    page.set_input_files("#try-image", str(tmp_path / "one.png"))
    page.wait_for_selector("#try-preview-box:not([hidden])")
    assert page.get_attribute("#try-preview", "src").startswith("blob:")
    assert page.eval_on_selector("#try-preview", "img => img.complete && img.naturalWidth > 0")
    assert "one.png" in page.inner_text("#try-preview-caption")
    assert not page.errors, page.errors
