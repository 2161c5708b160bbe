"""Hugging Face fine-tuning jobs through the real stack (Redis, Celery worker, uvicorn), offline
(HF_HUB_OFFLINE=1): the real pretrained all-MiniLM-L6-v2, a tiny GPT-2 and a tiny ViT that the
test saves as local models, resume after SIGKILL, cancel, and the downloaded save_pretrained ZIP."""

from __future__ import annotations

import io
import json
import signal
import time
import zipfile

import pytest

from tests import datagen, hfmodels
from tests.integration.helpers import login
from tests.stack import running_stack, wait_for

pytestmark = pytest.mark.stack

TEXT_TRAIN = {"epochs": 2, "batch_size": 16, "learning_rate": 1e-4, "seed": 1}


@pytest.fixture(scope="module")
def hf_stack():
    env = {"HF_HUB_OFFLINE": "1", "TRAINYARD_JOB_LEASE_SECONDS": "4", "TRAINYARD_HEARTBEAT_SECONDS": "1"}
    with running_stack(env=env) as s:
        # An admin registers the packaged MiniLM folder as a local model.
        s.manage("shell", "-c", "from webapp.hub.models import LocalModel; LocalModel.objects.create("
                 f"name='minilm', task='text_classification', path={str(hfmodels.minilm_dir())!r})")
        yield s


def _dataset(s, api, path, kind):
    with open(path, "rb") as f:
        r = api.post(s.url("/api/datasets/"), files={"file": (path.name, f)}, data={"kind": kind})
    assert r.status_code == 201, r.text
    ds = s.wait_dataset(api, r.json()["id"], timeout=120)
    assert ds["status"] == "ready", ds["error"]
    return ds


@pytest.fixture(scope="module")
def sentiment(hf_stack, tmp_path_factory):
    s = hf_stack
    return _dataset(s, s.api("alice"), datagen.sentiment_csv(tmp_path_factory.mktemp("d") / "reviews.csv", n=240),
                    "text")


def _events(s, api, job_id):
    """Every stored event, page by page (the endpoint gives at most 5000 at a time)."""
    events = []
    while True:
        after = events[-1]["seq"] if events else 0
        page = api.get(s.url(f"/api/jobs/{job_id}/events/?after={after}&limit=5000")).json()["events"]
        if not page:
            return events
        events += page


def _submit(s, api, ds, arch, model_config, train_config):
    r = api.post(s.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": arch,
                                            "model_config": model_config, "train_config": train_config})
    assert r.status_code == 201, r.text
    return r.json()


def test_minilm_fine_tunes_to_90_percent_and_the_zip_predicts_the_same(hf_stack, sentiment, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    s, api = hf_stack, hf_stack.api("alice")
    job = _submit(s, api, sentiment, "hf_text_classification", {"model": "local:minilm", "max_length": 32},
                  TEXT_TRAIN)
    done = s.wait_job(api, job["id"], timeout=300)
    assert done["status"] == "succeeded", (done["error"], s.logs())
    assert done["metrics"]["accuracy"] >= 0.9
    assert {a["name"] for a in done["artifacts"]} == {"model.zip", "MODEL_CARD.md", "val_predictions.json"}

    events = _events(s, api, job["id"])
    kinds = {e["kind"] for e in events}
    assert {"status", "progress", "metric", "samples", "confusion", "log"} <= kinds
    assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))
    val = [e for e in events if e["kind"] == "metric" and e["split"] == "val"]
    assert [round(e["epoch"]) for e in val] == [1, 2]
    train = [e for e in events if e["kind"] == "metric" and e["split"] == "train"]
    assert train and all(e["values"]["loss"] > 0 for e in train)
    samples = [e for e in events if e["kind"] == "samples"][-1]["items"]
    assert samples and {"item", "prediction", "truth", "confidence"} <= set(samples[0])

    # The download is a save_pretrained folder that from_pretrained loads (safetensors), and it
    # predicts what the worker's final evaluation predicted.
    r = api.get(s.url(f"/api/jobs/{job['id']}/artifacts/model.zip"))
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        names = set(zf.namelist())
        assert {"model/config.json", "model/model.safetensors", "model/tokenizer.json"} <= names
        assert not any(n.endswith(".bin") for n in names)
        zf.extractall(tmp_path)
    folder = tmp_path / "model"
    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    expected = json.loads(api.get(s.url(f"/api/jobs/{job['id']}/artifacts/val_predictions.json")).content)
    texts = json.loads((s.data_dir / "datasets" / sentiment["id"] / "val_texts.json").read_text())
    assert len(expected) == len(texts) == sentiment["info"]["num_val"]
    with torch.no_grad():
        enc = tokenizer(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
        prob = model(**enc).logits.softmax(-1)
    conf, pred = prob.max(-1)
    assert [model.config.id2label[int(p)] for p in pred] == [e["prediction"] for e in expected]
    assert conf.tolist() == pytest.approx([e["confidence"] for e in expected], abs=1e-4)


def test_sigkill_mid_job_resumes_from_the_trainer_checkpoint(hf_stack, sentiment):
    s, api = hf_stack, hf_stack.api("alice")
    epochs = 3
    job = _submit(s, api, sentiment, "hf_text_classification", {"model": "local:minilm", "max_length": 32},
                  {**TEXT_TRAIN, "epochs": epochs})

    # Kill the worker once epoch 1 is checkpointed and training has gone on past it.
    def past_first_checkpoint():
        events = _events(s, api, job["id"])
        return any(e["kind"] == "metric" and e["split"] == "train" and e["epoch"] > 1.05 for e in events)
    wait_for(past_first_checkpoint, 240, "epoch 2 to start", interval=0.2)
    s.stop("worker", sig=signal.SIGKILL)
    s.start_worker("worker2", queues="train,ingest")
    try:
        done = s.wait_job(api, job["id"], timeout=300)
    finally:
        s.stop("worker2")
        s.start_worker("worker", queues="train,ingest")
    assert done["status"] == "succeeded", (done["error"], s.logs())
    assert done["attempts"] == 2 and done["worker"].startswith("worker2@")
    assert done["metrics"]["accuracy"] >= 0.9

    events = _events(s, api, job["id"])
    assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))
    logs = " | ".join(e["text"] for e in events if e["kind"] == "log")
    assert "stopped responding; job requeued" in logs and "resumed from the checkpoint after epoch" in logs
    val = [e for e in events if e["kind"] == "metric" and e["split"] == "val"]
    assert [round(e["epoch"]) for e in val] == list(range(1, epochs + 1))  # each epoch charted once
    train_steps = [e["step"] for e in events if e["kind"] == "metric" and e["split"] == "train"]
    assert train_steps == sorted(set(train_steps))
    statuses = [e["status"] for e in events if e["kind"] == "status"]
    assert statuses == ["queued", "running", "queued", "running", "succeeded"]
    assert {a["name"] for a in done["artifacts"]} >= {"model.zip"}


def test_cancel_stops_a_running_fine_tuning_job(hf_stack, sentiment):
    s, api = hf_stack, hf_stack.api("alice")
    job = _submit(s, api, sentiment, "hf_text_classification", {"model": "local:minilm", "max_length": 32},
                  {**TEXT_TRAIN, "epochs": 50, "batch_size": 4})
    wait_for(lambda: any(e["kind"] == "metric" for e in _events(s, api, job["id"])), 240, "training to start")
    assert api.post(s.url(f"/api/jobs/{job['id']}/cancel/")).status_code == 200
    done = s.wait_job(api, job["id"], timeout=120)
    assert done["status"] == "cancelled" and done["artifacts"] == []
    assert done["epoch"] < 50


def _wait_model_ready(s, user: str, name: str, timeout: float = 120) -> None:
    api = s.api(user)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = {m["name"]: m for m in api.get(s.url("/api/models/")).json()["models"]}
        if rows.get(name, {}).get("status") == "ready":
            return
        assert rows.get(name, {}).get("status") != "failed", rows[name]["error"]
        time.sleep(0.3)
    raise AssertionError(f"{name} was not extracted in {timeout} s: {s.logs()}")


def test_tiny_gpt2_uploaded_as_zip_fine_tunes_with_falling_loss_and_samples(hf_stack, tmp_path):
    s = hf_stack
    corpus = datagen.repetitive_corpus(tmp_path / "verses.txt", repeats=80)
    model_zip = hfmodels.zip_folder(hfmodels.tiny_gpt2(tmp_path / "gpt", corpus.read_text()), tmp_path / "gpt.zip")
    # Upload the save_pretrained folder on the Models page (a browser session with CSRF).
    web = login(s, "alice", "S3cure-pass-for-tests")
    with open(model_zip, "rb") as f:
        r = web.post(s.url("/models/"), data={"name": "tiny-gpt", "task": "causal_lm",
                                              "csrfmiddlewaretoken": web.cookies["csrftoken"]},
                     files={"file": ("gpt.zip", f)}, headers={"Referer": s.url("/models/")}, allow_redirects=False)
    assert r.status_code == 302, r.text[:2000]
    _wait_model_ready(s, "alice", "tiny-gpt")  # the ingest worker unpacks it
    assert "local:tiny-gpt" in web.get(s.url("/models/")).text
    assert "local:tiny-gpt" in web.get(s.url("/jobs/new/")).text  # offered by the picker
    # Another user can neither see nor use it.
    bob = s.api("bob")
    assert "tiny-gpt" not in login(s, "bob", "S3cure-pass-for-tests").get(s.url("/models/")).text

    api = s.api("alice")
    ds = _dataset(s, api, corpus, "corpus")
    r = bob.post(s.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "hf_causal_lm",
                                            "model_config": {"model": "local:tiny-gpt"}})
    assert r.status_code == 400  # not bob's dataset, nor his model
    job = _submit(s, api, ds, "hf_causal_lm", {"model": "local:tiny-gpt", "block_size": 32, "prompt": "the quick",
                                               "max_new_tokens": 24},
                  {"epochs": 4, "batch_size": 16, "learning_rate": 3e-3})
    done = s.wait_job(api, job["id"], timeout=240)
    assert done["status"] == "succeeded", (done["error"], s.logs())
    events = _events(s, api, job["id"])
    val = [e["values"]["loss"] for e in events if e["kind"] == "metric" and e["split"] == "val"]
    assert len(val) == 4 and val[-1] < val[0] * 0.8, val
    samples = [e for e in events if e["kind"] == "samples"]
    assert len(samples) == 4 and samples[-1]["items"][0]["prompt"] == "the quick"
    assert all(item["generated"] for item in samples[-1]["items"])


def test_tiny_vit_fine_tunes_on_the_digits_zip(hf_stack, tmp_path):
    s, api = hf_stack, hf_stack.api("alice")
    ds = _dataset(s, api, datagen.digits_png_zip(tmp_path / "digits.zip", limit=1000), "image")
    folder = hfmodels.tiny_vit(tmp_path / "vit", image_size=ds["info"]["input_shape"][-1], channels=1)
    s.manage("shell", "-c", "from webapp.hub.models import LocalModel; LocalModel.objects.create("
             f"name='tiny-vit', task='image_classification', path={str(folder)!r})")
    job = _submit(s, api, ds, "hf_image_classification", {"model": "local:tiny-vit"},
                  {"epochs": 8, "batch_size": 32, "learning_rate": 3e-3})
    done = s.wait_job(api, job["id"], timeout=240)
    assert done["status"] == "succeeded", (done["error"], s.logs())
    assert done["metrics"]["accuracy"] >= 0.6  # ten classes: chance is 0.1
    events = _events(s, api, job["id"])
    samples = [e for e in events if e["kind"] == "samples"][-1]["items"]
    assert samples[0]["image"].startswith("data:image/png;base64,")


def test_a_hub_id_on_an_offline_server_fails_at_start_with_the_reason(hf_stack, sentiment):
    s, api = hf_stack, hf_stack.api("alice")
    job = _submit(s, api, sentiment, "hf_text_classification", {"model": "someone/not-cached-model"},
                  {"epochs": 1})
    done = s.wait_job(api, job["id"], timeout=120)
    assert done["status"] == "failed"
    assert "offline (HF_HUB_OFFLINE=1)" in done["error"] and "someone/not-cached-model" in done["error"]
    assert done["artifacts"] == []


def test_lora_job_survives_sigkill_and_its_adapter_and_merged_model_predict_what_the_job_did(hf_stack, sentiment,
                                                                                             tmp_path):
    """LoRA (issue "Fine-tune large language models on modest GPUs") through the real stack: the
    worker is killed after the first adapter checkpoint, another resumes it; the download's
    adapter (on the pretrained base) and merged model give the job's validation predictions."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    s, api = hf_stack, hf_stack.api("alice")
    job = _submit(s, api, sentiment, "hf_text_classification",
                  {"model": "local:minilm", "max_length": 32, "method": "lora", "merge_adapter": True},
                  {"epochs": 3, "batch_size": 16, "learning_rate": 5e-4, "seed": 1})
    assert job["train_config"]["warmup_epochs"] == 0.18  # the fine-tuning defaults fill what was not given

    def past_first_checkpoint():
        return any(e["kind"] == "metric" and e["split"] == "train" and e["epoch"] > 1.05
                   for e in _events(s, api, job["id"]))
    wait_for(past_first_checkpoint, 240, "epoch 2 to start", interval=0.2)
    s.stop("worker", sig=signal.SIGKILL)
    s.start_worker("worker2", queues="train,ingest")
    try:
        done = s.wait_job(api, job["id"], timeout=300)
    finally:
        s.stop("worker2")
        s.start_worker("worker", queues="train,ingest")
    assert done["status"] == "succeeded", (done["error"], s.logs())
    assert done["attempts"] == 2 and done["metrics"]["accuracy"] >= 0.75 and done["warnings"] == []
    logs = " | ".join(e["text"] for e in _events(s, api, job["id"]) if e["kind"] == "log")
    assert "resumed from the checkpoint after epoch" in logs and "LORA (rank 8, alpha 16" in logs

    r = api.get(s.url(f"/api/jobs/{job['id']}/artifacts/model.zip"))
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        zf.extractall(tmp_path)
    expected = json.loads(api.get(s.url(f"/api/jobs/{job['id']}/artifacts/val_predictions.json")).content)
    expected = expected["predictions"] if isinstance(expected, dict) else expected
    texts = json.loads((s.data_dir / "datasets" / sentiment["id"] / "val_texts.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "adapter")
    classes = sentiment["info"]["classes"]
    base = AutoModelForSequenceClassification.from_pretrained(
        hfmodels.minilm_dir(), num_labels=len(classes), id2label=dict(enumerate(classes)),
        label2id={c: i for i, c in enumerate(classes)})
    adapted = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model", use_safetensors=True).eval()
    enc = tokenizer(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
    with torch.no_grad():
        prob = adapted(**enc).logits.softmax(-1)
        torch.testing.assert_close(merged(**enc).logits.softmax(-1), prob, rtol=0, atol=1e-5)
    conf, pred = prob.max(-1)
    assert [row["prediction"] for row in expected] == [classes[int(i)] for i in pred]
    assert max(abs(row["confidence"] - float(c)) for row, c in zip(expected, conf)) < 1e-4
