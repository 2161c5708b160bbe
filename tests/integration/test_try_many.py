"""Try many through the real stack (redis-server, a Celery worker consuming `infer`, uvicorn): a
CSV of table rows becomes a CSV with one prediction per row, equal to the single tries; progress
is pushed on the user's socket; a bad file fails with the reader's message; only the user who
asked can read or download it."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest

from tests.integration.helpers import login
from tests.integration.test_try_model import pushed, train, try_model, user_socket
from tests.stack import PASSWORD, write_separable_csv

pytestmark = pytest.mark.stack


def _post(stack, session, job_id, name, data):
    return session.post(stack.url(f"/jobs/{job_id}/try/batch/"), files={"file": (name, data)},
                        headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": stack.url("/")})


def _finished(ws, batch_id, timeout=120) -> tuple[dict, list[dict]]:
    """The batch's final state as the page gets it (pushed), and every pushed state before it."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if msg["type"] == "batch" and msg["batch"]["id"] == batch_id:
            seen.append(msg["batch"])
            if msg["batch"]["status"] in ("done", "failed"):
                return msg["batch"], seen
    raise TimeoutError("the batch did not finish")


def test_a_csv_of_rows_gives_a_csv_of_the_same_predictions(stack, tmp_path):
    api = stack.api("alice")
    source = write_separable_csv(tmp_path / "t.csv", n=300)
    job_id = train(stack, api, source, "tabular", "mlp", epochs=3, lr=0.01)
    alice, bob = login(stack, "alice", PASSWORD), login(stack, "bob", PASSWORD)
    rows = source.read_text().splitlines()[1:]
    fresh = write_separable_csv(tmp_path / "new.csv", n=600, seed=7).read_text()
    with user_socket(stack, alice) as ws:
        r = _post(stack, alice, job_id, "new.csv", fresh.encode())
        assert r.status_code == 202, r.text
        batch_id = r.json()["batch"]["id"]
        final, seen = _finished(ws, batch_id)
        assert final["status"] == "done", final["error"]
        assert final["rows_total"] == 600 and final["rows_failed"] == 0
        assert any(s["status"] == "running" for s in seen)
        download = alice.get(stack.url(final["download"]))
        assert download.status_code == 200 and download.headers["Content-Type"].startswith("text/csv")
        out = list(csv.DictReader(io.StringIO(download.text)))
        assert len(out) == len(fresh.splitlines()) - 1 == 600
        # Equal to the single tries of the same rows (a few, through the same stack).
        for i in (0, 1, 299, 599):
            x1, x2, x3, _ = fresh.splitlines()[1 + i].split(",")
            t = try_model(stack, alice, job_id, data={"f:x1": x1, "f:x2": x2, "f:x3": x3})
            p = pushed(ws, t.json()["prediction"]["id"])
            assert out[i]["line"] == f"line {i + 2}"
            assert out[i]["prediction"] == p["result"]["top"][0]["label"]
            assert abs(float(out[i]["confidence"]) - p["result"]["top"][0]["confidence"]) < 1e-4
        # A file the reader refuses fails with its message and leaves no CSV.
        r = _post(stack, alice, job_id, "bad.csv", b"x1,x2,x3\n1,2\n")
        final, _ = _finished(ws, r.json()["batch"]["id"])
        assert final["status"] == "failed" and "line 2: 2 fields, but the header has 3" in final["error"]
        assert final["download"] is None
    assert len(rows) == 300
    # Only alice reads or downloads her batch.
    assert bob.get(stack.url(f"/jobs/{job_id}/try/batch/{batch_id}/")).status_code == 404
    assert bob.get(stack.url(f"/jobs/{job_id}/try/batch/{batch_id}/download/")).status_code == 404
