"""Chromium at phone width (390 px) and in dark mode, on the real stack: no page scrolls
sideways, the nav stays one row under the brand, the confusion matrix stays readable."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_job_page_live import queue
from tests.e2e.test_ui_flow import sign_in
from tests.stack import write_separable_csv

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

WIDEST = """() => {
  const out = [];
  for (const e of document.querySelectorAll('body *')) {
    const r = e.getBoundingClientRect();
    if (r.right > innerWidth + 1 && getComputedStyle(e).position !== 'fixed') out.push(e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(r.right));
  }
  return out.slice(0, 8);
}"""


@pytest.fixture(scope="module")
def finished(stack, tmp_path_factory):
    api = stack.api("alice")
    path = write_separable_csv(tmp_path_factory.mktemp("phone") / "a-rather-long-dataset-name-for-a-phone.csv", n=400)
    with open(path, "rb") as f:
        r = api.post(stack.url("/api/datasets/"), files={"file": (path.name, f)},
                     data={"kind": "tabular", "name": "a-rather-long-dataset-name-for-a-phone-screen"})
    ds = stack.wait_dataset(api, r.json()["id"], timeout=120)
    job = queue(stack, ds["id"], epochs=3)
    assert stack.wait_job(api, job, timeout=180)["status"] == "succeeded"
    return job


def _luminance(rgb):
    def lin(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _rgba(css: str):
    nums = [float(x) for x in re.findall(r"[\d.]+", css)]
    if css.startswith("color("):  # color(srgb r g b / a), channels 0..1
        nums = [n * 255 for n in nums[:3]] + nums[3:]
    return nums[:3], (nums[3] if len(nums) > 3 else 1.0)


def test_no_page_scrolls_sideways_at_390_px(browser, stack, finished):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    page = context.new_page()
    try:
        sign_in(page, stack)
        for path in ("/jobs/", "/datasets/", "/models/", f"/jobs/{finished}/", f"/jobs/{finished}/model-card/",
                     "/jobs/new/", "/account/profile/", "/cluster/", "/jobs/00000000-0000-0000-0000-000000000000/"):
            page.goto(stack.url(path))
            page.wait_for_timeout(300)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (path, width, page.evaluate(WIDEST))
            tops = page.eval_on_selector_all("header nav a", "as => as.map(a => Math.round(a.getBoundingClientRect().top))")
            assert len(set(tops)) == 1, (path, tops)  # the nav is one row
            assert page.eval_on_selector("header.topbar", "h => h.getBoundingClientRect().height") < 110, path
        page.goto(stack.url("/datasets/"))
        scroller = page.locator(".table-scroll").first
        assert scroller.evaluate("s => s.scrollWidth > s.clientWidth")  # the table scrolls in its own box
        # The skip link is the first stop of the keyboard and leads to the main content.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip-link"
        page.keyboard.press("Enter")
        assert page.evaluate("location.hash") == "#main"
    finally:
        context.close()


def test_the_confusion_matrix_diagonal_reads_at_4_5_to_1_in_dark_mode(browser, stack, finished):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    page = context.new_page()
    try:
        sign_in(page, stack)
        page.goto(stack.url(f"/jobs/{finished}/"))
        page.wait_for_selector("#confusion td.diag")
        card_bg, _ = _rgba(page.eval_on_selector("#confusion-card", "e => getComputedStyle(e).backgroundColor"))
        cells = page.eval_on_selector_all("#confusion td", "tds => tds.map(td => [td.className, getComputedStyle(td).backgroundColor, getComputedStyle(td).color])")
        assert any(c[0] == "diag" for c in cells)
        for cls, bg, fg in cells:
            rgb, alpha = _rgba(bg)
            blended = [alpha * c + (1 - alpha) * b for c, b in zip(rgb, card_bg)]
            text, _ = _rgba(fg)
            lighter, darker = sorted((_luminance(blended), _luminance(text)), reverse=True)
            ratio = (lighter + 0.05) / (darker + 0.05)
            assert ratio >= 4.5, (cls, bg, fg, round(ratio, 2))
    finally:
        context.close()
