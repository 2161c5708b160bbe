from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parents[2]
# A test run leaves the tracked tree alone: screenshots go to /test-artifacts/ (git-ignored)
# unless TRAINYARD_SCREENSHOTS names a folder; `make screenshots` points it at docs/screenshots.
SCREENSHOTS = Path(os.environ.get("TRAINYARD_SCREENSHOTS") or ROOT / "test-artifacts" / "screenshots")


# Package scope, not session: Playwright's sync API keeps an event loop running in the main thread
# while it is open, and the asyncio.run() of the integration and webapp tests that follow would fail.
@pytest.fixture(scope="package")
def browser():
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (make test installs it when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("response", lambda r: r.status >= 400 and page.errors.append(f"HTTP {r.status} {r.url}"))
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshots():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
