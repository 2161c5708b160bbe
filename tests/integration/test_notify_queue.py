"""One user's slow webhook receiver stalls nobody (issue: a receiver sending one byte every 3 s
held the single `infer` worker for a minute per notification): notifications run on their own
queue and worker, and a delivery has one total deadline. Real stack: redis-server, a worker for
train/ingest/infer, a separate `notify` worker, the ASGI server."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.integration.helpers import login
from tests.integration.test_try_model import pushed, train, try_model, user_socket
from tests.stack import PASSWORD, Stack, wait_for, write_separable_csv

pytestmark = pytest.mark.stack


class Trickler:
    """A receiver that takes the POST, then answers one byte every 3 s: every read is short,
    the whole answer would take minutes."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        self.holding = threading.Event()  # a delivery is connected and waiting on us
        self.released = threading.Event()
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.server.accept()
        conn.recv(65536)
        self.holding.set()
        try:
            for byte in b"HTTP/1.1 204 No Content\r\n\r\n":
                if self.stop.wait(3):
                    break
                conn.send(bytes([byte]))
        except OSError:
            pass  # the sender hung up (its deadline)
        finally:
            self.released.set()
            conn.close()


@pytest.fixture
def own_stack():
    s = Stack(env={"TRAINYARD_WEBHOOK_TIMEOUT": "20", "TRAINYARD_WEBHOOK_RETRIES": "0"}).start()
    assert "notify" in s.procs and "notify" not in s.worker_queues  # the default: its own worker
    try:
        yield s
    finally:
        s.close()


def test_a_slow_webhook_does_not_delay_try_the_model(own_stack, tmp_path):
    stack = own_stack
    receiver = Trickler()
    charlie = login(stack, "charlie", PASSWORD)
    csrf = {"csrfmiddlewaretoken": charlie.cookies["csrftoken"]}
    r = charlie.post(stack.url("/account/notifications/"),
                     data={**csrf, "webhook_url": f"http://127.0.0.1:{receiver.port}/hook"})
    assert "Notification settings saved" in r.text and "Signing secret (shown once)" in r.text
    job_id = train(stack, stack.api("charlie"), write_separable_csv(tmp_path / "t.csv", n=300), "tabular",
                   "mlp", {"hidden_sizes": "16"}, epochs=3, lr=0.01)
    wait_for(receiver.holding.is_set, 60, "the notification to reach the slow receiver")
    with user_socket(stack, charlie) as ws:
        r = try_model(stack, charlie, job_id, {"f:x1": "2", "f:x2": "1", "f:x3": "0"})
        assert r.ok, r.text
        answer = pushed(ws, r.json()["prediction"]["id"])
    assert answer["status"] == "done", answer
    assert not receiver.released.is_set(), "try-the-model waited for the notification"
    # The delivery ends at its total deadline (20 s), however slowly the receiver answers.
    wait_for(lambda: "no answer from the receiver" in charlie.get(stack.url("/account/profile/")).text, 90,
             "the delivery cut at its deadline")
    receiver.stop.set()
