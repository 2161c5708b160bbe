"""The page's upload goes by tus (vendored tus-js-client) and survives a reload mid-file: the
second PATCH is held and the page reloaded; choosing the same file again resumes from the byte
the server has (the first PATCH after the reload starts there, not at 0), and the stored file's
sha256 equals the original."""

from __future__ import annotations

import hashlib

import pytest

from tests.e2e.test_ui_flow import sign_in
from tests.stack import running_stack, write_separable_csv

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

CHUNK = 1024 * 1024


@pytest.fixture(scope="module")
def small_chunk_stack():
    with running_stack(env={"TRAINYARD_UPLOAD_CHUNK_MB": "1"}) as s:
        yield s


def test_page_upload_resumes_after_a_reload(page, small_chunk_stack, tmp_path):
    stack = small_chunk_stack
    csv = write_separable_csv(tmp_path / "resume.csv", n=130_000)
    size = csv.stat().st_size
    assert size > 3 * CHUNK
    sign_in(page, stack)
    page.goto(stack.url("/datasets/"))

    patches, cut, state = [], [], {"cutting": True}

    def cut_after_first(route):
        if route.request.method != "PATCH" or not state["cutting"]:
            route.continue_()
        elif not patches:
            patches.append(int(route.request.headers["upload-offset"]))
            route.continue_()
        else:
            cut.append(int(route.request.headers["upload-offset"]))
            route.abort("connectionreset")  # the connection drops; tus-js-client retries, dropped again

    page.route("**/api/uploads/tus/**", cut_after_first)
    page.set_input_files("input[type=file]", str(csv))
    page.fill("input[name=name]", "resumed")
    page.click("button:has-text('Upload')")
    page.wait_for_function("() => document.getElementById('upload-progress').value > 0", timeout=30_000)
    for _ in range(300):
        if cut:
            break
        page.wait_for_timeout(100)
    assert patches == [0] and cut and set(cut) == {CHUNK}, (patches, cut)
    assert [k for k in page.evaluate("() => Object.keys(localStorage)") if k.startswith("tus::")]
    page.reload()
    state["cutting"] = False
    # The page says an upload was interrupted; the same file again resumes it.
    page.wait_for_selector("#upload-resume:not([hidden])")
    assert "resume.csv" in page.inner_text("#upload-resume")
    offsets = []
    page.on("request", lambda r: r.method == "PATCH" and offsets.append(int(r.headers["upload-offset"])))
    page.set_input_files("input[type=file]", str(csv))
    page.fill("input[name=name]", "resumed")
    page.click("button:has-text('Upload')")
    page.wait_for_selector("#stat-rows", timeout=120_000)  # dataset page, reloaded when ingest is done
    assert offsets and offsets[0] == CHUNK, offsets  # resumed after the stored chunk, not from byte 0
    assert len(offsets) == -(-(size - CHUNK) // CHUNK)

    api = stack.api("alice")
    [ds] = [d for d in api.get(stack.url("/api/datasets/")).json()["datasets"] if d["name"] == "resumed"]
    assert ds["status"] == "ready" and ds["original_filename"] == "resume.csv"
    stored = stack.data_dir / "datasets" / ds["id"] / "source.csv"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(csv.read_bytes()).hexdigest()
    # Finished: tus-js-client forgot the upload, so the page offers nothing to resume.
    assert not [u for u in page.evaluate("() => Object.keys(localStorage)") if u.startswith("tus::")]
    # the only errors are the connections the test itself cut
    assert not [e for e in page.errors if "ERR_CONNECTION_RESET" not in e and "net::" not in e], page.errors
    assert not (stack.data_dir / "uploads" / "sessions").exists() or \
        not list((stack.data_dir / "uploads" / "sessions").iterdir())
