"""Chromium through the real stack: try an image model and a text model from the job page, and
download its ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

from tests import datagen
from tests.e2e.test_ui_flow import sign_in
from tests.integration.test_try_model import train

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_try_image_and_text_models_and_download_onnx(page, stack, tmp_path, screenshots):
    from PIL import Image
    from sklearn.datasets import load_digits

    api = stack.api("alice")
    image_job = train(stack, api, datagen.digits_png_zip(tmp_path / "digits.zip", limit=400), "image", "cnn", epochs=3)
    text_job = train(stack, api, datagen.sentiment_jsonl(tmp_path / "reviews.jsonl", n=300), "text", "transformer",
                     {"layers": 1, "heads": 2, "width": 32, "ffn_size": 64}, epochs=6, lr=0.003)
    digits = load_digits()
    png = tmp_path / "seven.png"
    seven = next(i for i in range(1500, 1797) if digits.target[i] == 7)
    Image.fromarray((digits.images[seven] * 255 / 16).astype(np.uint8)).resize((64, 64)).save(png)

    sign_in(page, stack)
    page.goto(stack.url(f"/jobs/{image_job}/"))
    page.click("#try-link")
    page.wait_for_url(f"**/jobs/{image_job}/try/")
    page.set_input_files("#try-image", str(png))
    page.click("#try-submit")
    page.wait_for_selector("#try-top li", timeout=60_000)
    rows = page.locator("#try-top li")
    assert rows.count() == 5
    assert "%" in rows.first.inner_text()
    assert page.get_attribute("#try-result", "data-type") == "classes"
    page.screenshot(path=str(screenshots / "try-the-model.png"), full_page=True)

    page.goto(stack.url(f"/jobs/{text_job}/try/"))
    page.fill("#try-text", "A wonderful and superb film, I loved it.")
    page.click("#try-submit")
    page.wait_for_selector("#try-top li", timeout=60_000)
    assert page.locator("#try-top li").first.locator(".label").inner_text() in {"pos", "neg"}
    page.fill("#try-text", "Awful, boring and dreadful acting.")
    first = page.inner_text("#try-top")
    page.click("#try-submit")
    for _ in range(600):
        if page.inner_text("#try-top") != first or page.is_visible("#try-error"):
            break
        page.wait_for_timeout(100)
    assert not page.is_visible("#try-error")

    # ONNX: export from the job page, then download it like any artifact
    page.goto(stack.url(f"/jobs/{image_job}/"))
    page.click("#onnx-button")
    page.wait_for_selector("#artifacts a:has-text('model.onnx')", timeout=120_000)
    assert "largest difference from PyTorch" in page.inner_text("#onnx-state")
    with page.expect_download() as download:
        page.click("#artifacts a:text-is('model.onnx')")
    import onnxruntime as ort

    data = open(download.value.path(), "rb").read()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": np.zeros((2, 1, 8, 8), np.float32)})[0].shape == (2, 10)
    assert page.errors == [], page.errors
