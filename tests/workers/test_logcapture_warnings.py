"""The job's log shows the training code's warnings, not the worker's own resource warnings."""

from __future__ import annotations

import warnings

from workers.adapters.logcapture import captured_output


def test_resource_warnings_stay_out_of_the_job_log():
    events = []
    with captured_output(events.append):
        warnings.warn("connection <psycopg.Connection [IDLE]> was deleted while still open", ResourceWarning)
        warnings.warn("the learning rate looks high", UserWarning)
    texts = [e["text"] for e in events]
    assert any("learning rate looks high" in t for t in texts)
    assert not any("deleted while still open" in t for t in texts), texts
