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
    from tests import hfmodels

    got = []
    with captured_output(got.append):
        sys.stderr.write("\x1b[1mbold\x1b[0m and \x1b[31mred\x1b[0m\n")
        print("\x1b[2K\rprogress 50%")
        # The real thing: transformers reports the classification head it had to initialise.
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_warning()
        hf_logging.disable_progress_bar()  # as the runner does
        AutoModelForSequenceClassification.from_pretrained(hfmodels.minilm_dir(), num_labels=2)
    assert {"level": "stderr", "text": "bold and red"} in got
    assert {"level": "stdout", "text": "progress 50%"} in got
    assert not any("\x1b" in g["text"] for g in got), got
    report = [g for g in got if "LOAD REPORT" in g["text"] or "newly initialized" in g["text"]
              or "MISSING" in g["text"]]
    assert report and {g["level"] for g in report} == {"info"}, got
    assert [g for g in got if g["level"] == "stderr"] == [{"level": "stderr", "text": "bold and red"}], got
