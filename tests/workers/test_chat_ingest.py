"""Instruction / chat ingest: both line forms normalised, each bad line named by its number with
nothing stored, and the seeded split."""

from __future__ import annotations

import json

import pytest

from tests import datagen
from workers.datasets import IngestError, ingest


def test_messages_and_prompt_response_lines_are_normalised_and_split(tmp_path):
    info = ingest("chat", datagen.chat_jsonl(tmp_path / "sums.jsonl", n=30), tmp_path / "ds", {})
    assert info["kind"] == "chat" and info["num_rows"] == 30 and info["num_train"] + info["num_val"] == 30
    assert info["num_val"] == 3  # the default 0.1
    assert info["messages"] == {"system": 10, "user": 30, "assistant": 30} and info["with_system"] == 10
    train = [json.loads(line)["messages"] for line in (tmp_path / "ds" / "train.jsonl").read_text().splitlines()]
    val = [json.loads(line)["messages"] for line in (tmp_path / "ds" / "val.jsonl").read_text().splitlines()]
    assert len(train) == 27 and len(val) == 3
    assert all(c[-1]["role"] == "assistant" and c[-2]["role"] == "user" for c in train + val)
    first = info["preview"]["conversations"][0]  # line 1, a prompt/response pair
    assert first[0]["role"] == "user" and first[0]["content"].startswith("add ")
    # The same seed, the same split.
    again = ingest("chat", tmp_path / "sums.jsonl", tmp_path / "ds2", {})
    assert (tmp_path / "ds2" / "val.jsonl").read_text() == (tmp_path / "ds" / "val.jsonl").read_text()
    assert again["num_val"] == 3


GOOD = json.dumps({"prompt": "hi", "response": "hello"})


@pytest.mark.parametrize(("bad", "message"), [
    ("{not json", r"line 2, column 2: not valid JSON"),
    ('["a"]', r"line 2: expected a JSON object, got list"),
    ('{"text": "x"}', r'line 2: neither "messages" nor "prompt" and "response"'),
    ('{"messages": []}', r'line 2: "messages" must be a non-empty list'),
    ('{"messages": [{"role": "bot", "content": "x"}]}', r"line 2, message 1: role 'bot' is not one of"),
    ('{"messages": [{"role": "user"}]}', r'line 2, message 1: expected an object with "role" and "content"'),
    ('{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}',
     r"line 2, message 1: the content must be a string, not int"),
    ('{"messages": [{"role": "user", "content": "x"}]}', r"line 2: the conversation has no assistant message"),
    ('{"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}',
     r"line 2: the first assistant message must follow a user message"),
    ('{"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "s"}, '
     '{"role": "assistant", "content": "y"}]}', r"line 2: a system message may only come first"),
    ('{"prompt": "x", "response": "  "}', r'line 2: "response" is empty'),
])
def test_each_bad_line_is_named_and_nothing_is_stored(tmp_path, bad, message):
    src = tmp_path / "bad.jsonl"
    src.write_text(GOOD + "\n" + bad + "\n" + GOOD + "\n")
    with pytest.raises(IngestError, match=message):
        ingest("chat", src, tmp_path / "ds", {})
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()


def test_too_few_conversations_and_an_array_are_refused(tmp_path):
    (tmp_path / "one.jsonl").write_text(GOOD + "\n\n")
    with pytest.raises(IngestError, match="1 conversation.*at least 2"):
        ingest("chat", tmp_path / "one.jsonl", tmp_path / "a", {})
    (tmp_path / "arr.jsonl").write_text("[" + GOOD + "]\n")
    with pytest.raises(IngestError, match="JSON array; chat data is JSON Lines"):
        ingest("chat", tmp_path / "arr.jsonl", tmp_path / "b", {})
