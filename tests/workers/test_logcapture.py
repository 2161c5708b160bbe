import sys
import warnings

from workers.adapters import logcapture
from workers.adapters.logcapture import captured_output


def test_prints_and_warnings_become_log_lines(monkeypatch):
    got = []
    with captured_output(got.append):
        print("epoch 1 done")
        print("partial", end="")
        sys.stderr.write("careful\n")
        warnings.warn("lr is high", UserWarning)
    assert got[0] == {"level": "stdout", "text": "epoch 1 done"}
    assert {"level": "stderr", "text": "careful"} in got
    assert any(g["text"].startswith("UserWarning: lr is high") for g in got)
    assert {"level": "stdout", "text": "partial"} in got


def test_output_is_capped(monkeypatch):
    monkeypatch.setattr(logcapture, "MAX_LINES", 3)
    got = []
    with captured_output(got.append):
        for i in range(10):
            print(i)
    assert [g["text"] for g in got][:3] == ["0", "1", "2"] and len(got) == 4 and "not kept" in got[-1]["text"]


def test_escape_codes_are_stripped_and_the_new_head_notice_is_info():
    # transformers 5's report when a classification head is new (as it prints it, colours included),
    # and 4.x's paragraph; written to stderr as transformers' logging handler does.
    report = ("[transformers] \x1b[1mBertForSequenceClassification LOAD REPORT\x1b[0m from: /models/minilm\n"
              "Key               | Status  | \n------------------+---------+-\nclassifier.bias   | MISSING | \n"
              "classifier.weight | MISSING | \n\nNotes:\n- MISSING:\tthose params were newly initialized because "
              "missing from the checkpoint. Consider training on your downstream task.\n"
              "Some weights of BertForSequenceClassification were not initialized from the model checkpoint at x and "
              "are newly initialized: ['classifier.bias']\nYou should probably TRAIN this model on a down-stream task "
              "to be able to use it for predictions and inference.\n")
    got = []
    with captured_output(got.append):
        sys.stderr.write("\x1b[1mbold\x1b[0m and \x1b[31mred\x1b[0m\n")
        print("\x1b[2K\rprogress 50%")
        sys.stderr.write(report)
    assert got[:2] == [{"level": "stderr", "text": "bold and red"}, {"level": "stdout", "text": "progress 50%"}]
    assert not any("\x1b" in g["text"] for g in got), got
    assert got[2]["text"] == "[transformers] BertForSequenceClassification LOAD REPORT from: /models/minilm"
    assert len(got) == 2 + 9 and {g["level"] for g in got[2:]} == {"info"}, got
