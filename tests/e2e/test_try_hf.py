"""Chromium through the real stack: try a fine-tuned Hugging Face text classifier (its top
classes) and a causal LM fine-tuned with LoRA (adapter/ only, loaded on its base), whose answer
arrives on the user socket in pieces while it is generated."""

from __future__ import annotations

import pytest

from tests import datagen, hfmodels
from tests.e2e.test_ui_flow import sign_in
from tests.integration.test_try_model import train

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _register(stack, name: str, task: str, folder) -> None:
    stack.manage("shell", "-c", "from webapp.hub.models import LocalModel; LocalModel.objects.get_or_create("
                 f"name={name!r}, defaults=dict(task={task!r}, path={str(folder)!r}, status='ready'))")


def test_try_a_hugging_face_classifier_and_a_streamed_causal_lm(page, stack, tmp_path, screenshots):
    from tests.workers.test_hf import tiny_bert

    reviews = datagen.sentiment_csv(tmp_path / "reviews.csv", n=120)
    corpus = datagen.repetitive_corpus(tmp_path / "verses.txt", repeats=30)
    texts = [line.split(",")[0] for line in reviews.read_text().splitlines()[1:]]
    _register(stack, "e2e-try-bert", "text_classification", tiny_bert(tmp_path / "bert", texts))
    _register(stack, "e2e-try-gpt", "causal_lm", hfmodels.tiny_gpt2(tmp_path / "gpt", corpus.read_text()))
    api = stack.api("alice")
    text_job = train(stack, api, reviews, "text", "hf_text_classification",
                     {"model": "local:e2e-try-bert", "max_length": 32}, epochs=1, lr=1e-3)
    lm_job = train(stack, api, corpus, "corpus", "hf_causal_lm",
                   {"model": "local:e2e-try-gpt", "block_size": 16, "max_new_tokens": 4, "method": "lora",
                    "lora_rank": 4}, epochs=1, lr=1e-2)

    sign_in(page, stack)
    page.goto(stack.url(f"/jobs/{text_job}/"))
    page.click("#try-link")
    page.wait_for_url(f"**/jobs/{text_job}/try/")
    page.fill("#try-text", "A wonderful and superb film, I loved it.")
    page.click("#try-submit")
    page.wait_for_selector("#try-top li", timeout=90_000)
    rows = page.locator("#try-top li")
    assert rows.count() == 2  # top 5 of two classes
    assert {rows.nth(i).locator(".label").inner_text() for i in range(2)} == {"pos", "neg"}
    assert "%" in rows.first.inner_text()

    page.goto(stack.url(f"/jobs/{lm_job}/try/"))
    page.evaluate("""() => { window.pieces = [];
        document.addEventListener('trainyard:prediction_tokens', (e) => window.pieces.push(e.detail)); }""")
    page.fill("#try-prompt", "the quick")
    page.fill("#try-temperature", "0")
    page.fill("#try-max-new", "40")
    page.click("#try-submit")
    page.wait_for_selector("#try-result[data-type=text], #try-error:not([hidden])", timeout=90_000)
    assert not page.is_visible("#try-error"), page.inner_text("#try-error")
    completion = page.text_content("#try-generated .completion")
    assert completion and page.text_content("#try-generated .prompt") == "the quick"
    pieces = page.evaluate("window.pieces")
    assert pieces, "no piece of the answer was pushed while it was generated"
    assert "".join(p["text"] for p in pieces) == completion
    assert [p["offset"] for p in pieces] == [sum(len(q["text"]) for q in pieces[:i]) for i in range(len(pieces))]
    page.screenshot(path=str(screenshots / "try-hf-lm.png"), full_page=True)
    assert page.errors == [], page.errors
