"""Try-the-model, ONNX export and job-end notifications through the real stack (redis-server,
Celery worker consuming `infer`, uvicorn): answers pushed on the user's socket, bad input, access."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from websockets.sync.client import connect

from tests import datagen
from tests.integration.helpers import login
from tests.stack import PASSWORD, wait_for, write_separable_csv

pytestmark = pytest.mark.stack


def train(stack, api, path, kind, arch, model_config=None, epochs=2, lr=0.003, min_accuracy=None):
    with open(path, "rb") as f:
        r = api.post(stack.url("/api/datasets/"), files={"file": (path.name, f)}, data={"kind": kind, "name": kind})
    assert r.status_code == 201, r.text
    ds = stack.wait_dataset(api, r.json()["id"], timeout=120)
    assert ds["status"] == "ready", ds["error"]
    r = api.post(stack.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": arch,
                                                "model_config": model_config or {},
                                                "train_config": {"epochs": epochs, "batch_size": 32,
                                                                 "learning_rate": lr}})
    assert r.status_code == 201, r.text
    job = stack.wait_job(api, r.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job["error"]
    if min_accuracy is not None:  # the model learned, so a wrong answer would be the preprocessing's
        assert job["metrics"]["accuracy"] >= min_accuracy, job["metrics"]
    return job["id"]


def user_socket(stack, session):
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    return connect(stack.base_url.replace("http://", "ws://") + "/ws/user/",
                   additional_headers={"Cookie": cookie, "Origin": stack.base_url}, open_timeout=10)


def try_model(stack, session, job_id, data=None, files=None):
    return session.post(stack.url(f"/jobs/{job_id}/try/predict/"), data=data or {}, files=files,
                        headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": stack.url("/")})


def pushed(ws, prediction_id, timeout=60) -> dict:
    """The try's answer as the page gets it: pushed on the user socket."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if msg["type"] == "prediction" and msg["prediction"]["id"] == prediction_id:
            return msg["prediction"]
    raise TimeoutError("no answer pushed")


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_try_an_image_model_and_export_it_to_onnx(stack, tmp_path):
    from sklearn.datasets import load_digits

    api = stack.api("alice")
    job_id = train(stack, api, datagen.digits_png_zip(tmp_path / "digits.zip", limit=400), "image", "cnn", epochs=3)
    alice, bob = login(stack, "alice", PASSWORD), login(stack, "bob", PASSWORD)
    assert "Try the model" in alice.get(stack.url(f"/jobs/{job_id}/")).text
    page = alice.get(stack.url(f"/jobs/{job_id}/try/"))
    assert page.status_code == 200 and 'id="try-image"' in page.text

    digits = load_digits()
    with user_socket(stack, alice) as ws:
        correct = 0
        for i in range(1500, 1510):  # images the job never saw (it trained on the first 400)
            r = try_model(stack, alice, job_id, files={"image": (f"{i}.png", png((digits.images[i] * 255 / 16).astype(np.uint8)))})
            assert r.status_code == 202, r.text
            p = pushed(ws, r.json()["prediction"]["id"])
            assert p["status"] == "done", p["error"]
            top = p["result"]["top"]
            assert len(top) == 5 and top[0]["confidence"] >= top[1]["confidence"]
            correct += top[0]["label"] == str(digits.target[i])
        assert correct >= 6, correct
        # the polling fallback reads the same row
        polled = alice.get(stack.url(f"/jobs/{job_id}/try/result/"), params={"id": p["id"]}).json()["prediction"]
        assert polled["status"] == "done" and polled["result"] == p["result"]

        # Bad input: a clear message, and nothing kept
        r = try_model(stack, alice, job_id, files={"image": ("notes.png", b"these are not pixels")})
        p = pushed(ws, r.json()["prediction"]["id"])
        assert p["status"] == "failed" and "not an image" in p["error"]
        assert not list((stack.data_dir / "inference").glob("*.img"))  # (batches/ belongs to the try-many tests)
        r = try_model(stack, alice, job_id)
        assert r.status_code == 400 and r.json()["error"] == "choose an image file"

    # Other users see nothing and can try nothing
    assert try_model(stack, bob, job_id, files={"image": ("x.png", png(np.zeros((8, 8), np.uint8)))}).status_code == 404
    assert bob.get(stack.url(f"/jobs/{job_id}/try/result/"), params={"id": p["id"]}).status_code == 404
    assert bob.get(stack.url(f"/jobs/{job_id}/try/")).status_code == 404

    # ONNX export: a task on the infer queue; the file is an artifact, checked by onnxruntime
    csrf = {"X-CSRFToken": alice.cookies["csrftoken"], "Referer": stack.url("/")}
    assert bob.post(stack.url(f"/jobs/{job_id}/onnx/"), headers={"X-CSRFToken": bob.cookies["csrftoken"],
                                                                 "Referer": stack.url("/")}).status_code == 404
    r = alice.post(stack.url(f"/jobs/{job_id}/onnx/"), headers=csrf)
    assert r.status_code == 202, r.text
    state = {}
    wait_for(lambda: state.update(alice.get(stack.url(f"/jobs/{job_id}/onnx/")).json()) or
             state["onnx"]["status"] != "pending", 120, "ONNX export")
    assert state["onnx"]["status"] == "done", state["onnx"]["error"]
    assert state["onnx"]["max_abs_diff"] <= 1e-4
    names = {a["name"] for a in state["artifacts"]}
    assert {"model.onnx", "model.onnx.json", "model.safetensors"} <= names
    onnx_bytes = alice.get(stack.url(f"/jobs/{job_id}/artifacts/model.onnx")).content
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": np.zeros((4, 1, 8, 8), np.float32)})[0]
    assert out.shape == (4, 10)
    assert bob.get(stack.url(f"/jobs/{job_id}/artifacts/model.onnx")).status_code == 404


def test_try_text_and_language_models(stack, tmp_path):
    api = stack.api("alice")
    text_job = train(stack, api, datagen.sentiment_jsonl(tmp_path / "reviews.jsonl", n=300), "text", "rnn",
                     {"hidden_size": 32, "embedding_dim": 32}, epochs=8, lr=0.01, min_accuracy=0.9)
    lm_job = train(stack, api, datagen.repetitive_corpus(tmp_path / "verses.txt", repeats=60), "corpus", "gpt",
                   {"layers": 1, "heads": 2, "width": 32, "block_size": 32}, epochs=1)
    alice = login(stack, "alice", PASSWORD)
    with user_socket(stack, alice) as ws:
        labels = {}
        for text in ("A wonderful and superb film, I loved it.", "Awful, boring and dreadful acting."):
            r = try_model(stack, alice, text_job, {"text": text})
            assert r.status_code == 202, r.text
            p = pushed(ws, r.json()["prediction"]["id"])
            assert p["status"] == "done", p["error"]
            labels[text] = p["result"]["top"][0]["label"]
        assert list(labels.values()) == ["pos", "neg"], labels
        r = try_model(stack, alice, text_job, {"text": "   "})
        assert r.status_code == 400 and r.json()["error"] == "type a text"

        r = try_model(stack, alice, lm_job, {"prompt": "the quick ", "temperature": "0", "top_k": "0", "length": "40"})
        p = pushed(ws, r.json()["prediction"]["id"])
        assert p["status"] == "done", p["error"]
        assert p["result"]["type"] == "text" and len(p["result"]["generated"]) == 40
        r = try_model(stack, alice, lm_job, {"prompt": "the", "length": "100000"})
        p = pushed(ws, r.json()["prediction"]["id"])
        assert p["status"] == "failed" and "length must be between 1 and 1000" in p["error"]
    # an RNN text classifier says why it has no ONNX export
    page = alice.get(stack.url(f"/jobs/{text_job}/")).text
    assert "ONNX export is not available" in page and "pack_padded_sequence" in page


class Receiver(BaseHTTPRequestHandler):
    posts: list = []
    fail_first = 1

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.posts.append((self.headers["Content-Type"], json.loads(body)))
        if Receiver.fail_first > 0:
            Receiver.fail_first -= 1
            self.send_response(503)
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_and_email_when_jobs_end(stack, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        charlie = login(stack, "charlie", PASSWORD)
        csrf = {"csrfmiddlewaretoken": charlie.cookies["csrftoken"]}
        r = charlie.post(stack.url("/account/notifications/"), data={**csrf, "webhook_url": "ftp://example.org/x",
                                                                     "email": "on"})
        assert "only http:// and https://" in r.text
        r = charlie.post(stack.url("/account/notifications/"), data={**csrf, "webhook_url": url, "email": "on"})
        assert "Notification settings saved" in r.text and url in r.text

        api = stack.api("charlie")
        path = write_separable_csv(tmp_path / "t.csv", n=200)
        with open(path, "rb") as f:
            ds = api.post(stack.url("/api/datasets/"), files={"file": (path.name, f)}, data={"name": "t"}).json()
        stack.wait_dataset(api, ds["id"])
        job = api.post(stack.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp",
                                                      "train_config": {"epochs": 1}}).json()
        assert stack.wait_job(api, job["id"])["status"] == "succeeded"
        # the first POST answers 503: the task tries again after a back-off
        wait_for(lambda: len(Receiver.posts) >= 2, 60, "webhook retry")
        kinds, body = Receiver.posts[-1]
        assert kinds == "application/json"
        assert body["event"] == "job.succeeded" and body["job"]["id"] == job["id"]
        assert 0 <= body["job"]["metrics"]["accuracy"] <= 1 and body["owner"] == "charlie"
        assert Receiver.posts[0][1] == body
        wait_for(lambda: "delivered (HTTP 204)" in charlie.get(stack.url("/account/profile/")).text, 30,
                 "delivery shown on the profile")
        mail_dir = stack.tmp / "mail"
        wait_for(lambda: any(mail_dir.glob("*")), 30, "e-mail")
        mail = "".join(p.read_text() for p in mail_dir.glob("*"))
        assert "charlie@example.com" in mail and "finished" in mail and job["id"] in mail

        # a cancelled job is reported too
        job2 = api.post(stack.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp",
                                                       "train_config": {"epochs": 200}}).json()
        api.post(stack.url(f"/api/jobs/{job2['id']}/cancel/"))
        assert stack.wait_job(api, job2["id"])["status"] == "cancelled"
        wait_for(lambda: any(b["job"]["id"] == job2["id"] for _, b in Receiver.posts), 60, "cancel webhook")
        assert [b["event"] for _, b in Receiver.posts if b["job"]["id"] == job2["id"]] == ["job.cancelled"]
        # alice asked for nothing: none of her jobs was posted
        assert {b["owner"] for _, b in Receiver.posts} == {"charlie"}
    finally:
        server.shutdown()


def test_try_table_and_sequence_models(stack, tmp_path):
    api = stack.api("alice")
    table_job = train(stack, api, write_separable_csv(tmp_path / "t.csv", n=400), "tabular", "mlp",
                      {"hidden_sizes": "16"}, epochs=10, lr=0.01, min_accuracy=0.9)
    seq_job = train(stack, api, datagen.sequence_csv(tmp_path / "s.csv", n=300, length=24), "sequence", "cnn1d",
                    epochs=8, lr=0.01, min_accuracy=0.8)
    alice = login(stack, "alice", PASSWORD)
    page = alice.get(stack.url(f"/jobs/{table_job}/try/")).text
    assert all(f'name="f:{c}"' in page for c in ("x1", "x2", "x3"))
    with user_socket(stack, alice) as ws:
        for (x1, x2), want in (((2.0, 1.0), "pos"), ((-2.0, -1.0), "neg")):
            r = try_model(stack, alice, table_job, {"f:x1": str(x1), "f:x2": str(x2), "f:x3": "0"})
            p = pushed(ws, r.json()["prediction"]["id"])
            assert p["status"] == "done" and p["result"]["top"][0]["label"] == want, p
        r = try_model(stack, alice, table_job, {"f:x1": "1", "f:x2": "abc", "f:x3": "0"})
        p = pushed(ws, r.json()["prediction"]["id"])
        assert p["status"] == "failed" and p["error"] == "'x2': 'abc' is not a number"
        r = try_model(stack, alice, table_job, {"features": "1, 2"})
        p = pushed(ws, r.json()["prediction"]["id"])
        assert p["status"] == "failed" and p["error"].startswith("expected 3 feature values")

        t = np.linspace(0, 1, 24)
        for shape, want in ((t * 1.5, "rise"), ((1 - t) * 1.5, "fall")):
            r = try_model(stack, alice, seq_job, {"sequence": ", ".join(f"{v:.3f}" for v in shape)})
            p = pushed(ws, r.json()["prediction"]["id"])
            assert p["status"] == "done" and p["result"]["top"][0]["label"] == want, p
        r = try_model(stack, alice, seq_job, {"sequence": "1, 2, 3"})
        p = pushed(ws, r.json()["prediction"]["id"])
        assert p["status"] == "failed" and "expected 24 numbers" in p["error"]
