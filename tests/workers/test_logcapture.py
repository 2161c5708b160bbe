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
