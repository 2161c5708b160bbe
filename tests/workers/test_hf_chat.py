"""Causal LM fine-tuning on instruction / chat data: the label mask (loss on the assistant's
replies only) checked token by token, the plain template when the tokenizer has none (and said
so in the log), held-out answers as samples, and the template saved with the model for trying."""

from __future__ import annotations

import json
import zipfile

import pytest

from tests import datagen, hfmodels
from tests.workers.test_hf import Recorder
from workers.training.spec import TrainSpec

CONVERSATION = [{"role": "system", "content": "You do sums."}, {"role": "user", "content": "add 1 and 2"},
                {"role": "assistant", "content": "1 + 2 = 3"}, {"role": "user", "content": "and 2 and 2?"},
                {"role": "assistant", "content": "2 + 2 = 4"}]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    folder = hfmodels.tiny_gpt2(tmp_path_factory.mktemp("gpt") / "gpt",
                                datagen.chat_jsonl(tmp_path_factory.mktemp("c") / "c.jsonl").read_text())
    return AutoTokenizer.from_pretrained(folder)


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_the_labels_are_the_assistant_replies_and_minus_100_elsewhere_in_the_plain_template(tokenizer):
    from workers.hf.data import FALLBACK_CHAT_TEMPLATE, encode_chat, ensure_chat_template

    tok = tokenizer
    tok.chat_template = None
    assert ensure_chat_template(tok) is False and tok.chat_template == FALLBACK_CHAT_TEMPLATE
    prompt1 = "You do sums.\n\n### User:\nadd 1 and 2\n\n### Assistant:\n"
    reply1 = "1 + 2 = 3<|endoftext|>\n\n"
    prompt2 = "### User:\nand 2 and 2?\n\n### Assistant:\n"
    reply2 = "2 + 2 = 4<|endoftext|>\n\n"
    row = encode_chat(tok, CONVERSATION, max_length=10_000)
    pieces = [(_ids(tok, prompt1), False), (_ids(tok, reply1), True), (_ids(tok, prompt2), False),
              (_ids(tok, reply2), True)]
    assert row["input_ids"] == [i for ids, _ in pieces for i in ids]
    assert row["labels"] == [i if reply else -100 for ids, reply in pieces for i in ids]
    assert row["attention_mask"] == [1] * len(row["input_ids"])
    assert tok.decode([i for i in row["labels"] if i != -100]) == reply1 + reply2
    # Cut at max_length: ids and labels alike.
    short = encode_chat(tok, CONVERSATION, max_length=7)
    assert short["input_ids"] == row["input_ids"][:7] and short["labels"] == row["labels"][:7]


def test_the_tokenizers_own_chat_template_is_used_and_masked_the_same_way(tokenizer):
    from workers.hf.data import chat_segments, encode_chat, ensure_chat_template

    tok = tokenizer
    tok.chat_template = CHATML
    assert ensure_chat_template(tok) is True and tok.chat_template == CHATML
    segments = chat_segments(tok, CONVERSATION)
    assert [text for text, reply in segments if reply] == ["1 + 2 = 3<|im_end|>\n", "2 + 2 = 4<|im_end|>\n"]
    assert "".join(t for t, _ in segments) == tok.apply_chat_template(CONVERSATION, tokenize=False)
    row = encode_chat(tok, CONVERSATION, 10_000)
    kept = [i for i in row["labels"] if i != -100]
    assert tok.decode(kept) == "1 + 2 = 3<|im_end|>\n2 + 2 = 4<|im_end|>\n"
    tok.chat_template = None


def test_a_chat_job_trains_on_the_replies_shows_held_out_answers_and_saves_its_template(tmp_path):
    from workers.datasets import ingest
    from workers.hf import run
    from workers.serving import hf_predict

    data = datagen.chat_jsonl(tmp_path / "sums.jsonl", n=60)
    ingest("chat", data, tmp_path / "ds", {"val_fraction": 0.2})
    folder = hfmodels.tiny_gpt2(tmp_path / "gpt", data.read_text())
    spec = TrainSpec("hf_causal_lm", {"model": "local:gpt", "block_size": 48, "max_new_tokens": 8, "temperature": 0},
                     {"epochs": 3, "batch_size": 8, "learning_rate": 1e-2}, str(tmp_path / "ds"), str(tmp_path / "job"),
                     device="cpu", log_interval=0.0, extra={"model_path": str(folder)})
    rec = Recorder()
    result = run(spec, [rec])
    assert result.status == "succeeded"
    assert any("no chat template" in m and "### User:" in m for m in rec.messages), rec.messages
    val = [v["loss"] for split, _, v in rec.logs if split == "val"]
    assert len(val) == 3 and val[-1] < val[0], val
    last = rec.samples[-1]
    assert [s["item"] for s in last] == ["held-out prompt 1", "held-out prompt 2", "held-out prompt 3"]
    assert all(s["prompt"].startswith("User: add ") and "reference" in s and " = " in s["reference"] for s in last)

    with zipfile.ZipFile(tmp_path / "job" / "artifacts" / "model.zip") as zf:
        zf.extractall(tmp_path / "out")
    saved = tmp_path / "out" / "model"
    template = (saved / "chat_template.jinja").read_text() if (saved / "chat_template.jinja").is_file() else \
        json.loads((saved / "tokenizer_config.json").read_text()).get("chat_template")
    assert "### Assistant:" in template
    answer = hf_predict.predict(tmp_path / "job" / "artifacts", "causal_lm",
                                {"prompt": "add 3 and 4", "temperature": "0", "max_new_tokens": "8"}, chat=True)
    assert "chat template" in answer["notes"][0]
