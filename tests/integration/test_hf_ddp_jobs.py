"""Hugging Face fine-tuning on several devices through the real stack (CPU workers declaring 2
gloo devices, offline, the real all-MiniLM-L6-v2): a 2-rank job fine-tunes and exports like a
one-process job, a batch the ranks cannot split evenly is refused at submit, a SIGKILLed rank
requeues the job (attempt counted) which resumes every rank from the Trainer checkpoint, and a
cancel stops every rank."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests import datagen, hfmodels
from tests.integration.test_ddp_jobs import rank_processes
from tests.integration.test_hf_jobs import _dataset, _events, _submit
from tests.stack import running_stack, wait_for

pytestmark = pytest.mark.stack

MODEL = {"model": "local:minilm", "max_length": 32}
TRAIN = {"epochs": 2, "batch_size": 8, "learning_rate": 1e-4, "seed": 1, "gpus": 2}


@pytest.fixture(scope="module")
def stack():
    env = {"HF_HUB_OFFLINE": "1", "TRAINYARD_WORKER_DEVICES": "2", "TRAINYARD_JOB_LEASE_SECONDS": "6",
           "TRAINYARD_HEARTBEAT_SECONDS": "1", "TRAINYARD_DDP_TIMEOUT_SECONDS": "20"}
    with running_stack(env=env) as s:
        s.manage("shell", "-c", "from webapp.hub.models import LocalModel; LocalModel.objects.create("
                 f"name='minilm', task='text_classification', path={str(hfmodels.minilm_dir())!r})")
        yield s


@pytest.fixture(scope="module")
def sentiment(stack, tmp_path_factory):
    return _dataset(stack, stack.api("alice"),
                    datagen.sentiment_csv(tmp_path_factory.mktemp("d") / "reviews.csv", n=100), "text")


def test_a_two_rank_fine_tuning_job_succeeds_and_an_uneven_batch_is_refused(stack, sentiment):
    s, api = stack, stack.api("alice")
    r = api.post(s.url("/api/jobs/"), json={"dataset": sentiment["id"], "architecture": "hf_text_classification",
                                            "model_config": MODEL, "train_config": {**TRAIN, "batch_size": 7}})
    assert r.status_code == 400 and "multiple of 2" in r.json()["errors"]["train_config.batch_size"], r.text
    job = _submit(s, api, sentiment, "hf_text_classification", MODEL, TRAIN)
    done = s.wait_job(api, job["id"], timeout=400)
    assert done["status"] == "succeeded", (done["error"], s.logs()[-5000:])
    assert done["metrics"]["accuracy"] >= 0.9 and {a["name"] for a in done["artifacts"]} >= {"model.zip"}
    events = _events(s, api, job["id"])
    assert [e["seq"] for e in events] == list(range(1, done["last_seq"] + 1))  # one reporter: rank 0
    logs = " | ".join(e["text"] for e in events if e["kind"] == "log")
    assert "2 ranks (DDP, gloo; 4 of the batch's 8 rows per rank)" in logs, logs[-3000:]
    assert [round(e["epoch"]) for e in events if e["kind"] == "metric" and e["split"] == "val"] == [1, 2]
    assert not rank_processes(job["id"])


def test_sigkill_of_rank_1_requeues_and_every_rank_resumes(stack, sentiment):
    s, api = stack, stack.api("alice")
    job = _submit(s, api, sentiment, "hf_text_classification", MODEL, {**TRAIN, "epochs": 4})

    def past_first_checkpoint():
        return any(e["kind"] == "metric" and e["split"] == "train" and e["epoch"] > 1.05
                   for e in _events(s, api, job["id"]))
    wait_for(past_first_checkpoint, 300, "epoch 2 to start", interval=0.2)
    ranks = rank_processes(job["id"])
    assert sorted(ranks) == [-1, 0, 1], ranks
    os.kill(ranks[1], signal.SIGKILL)
    wait_for(lambda: not set(rank_processes(job["id"]).values()) & set(ranks.values()), 60, "old ranks gone")
    done = s.wait_job(api, job["id"], timeout=500)
    assert done["status"] == "succeeded" and done["attempts"] == 2, (done, s.logs()[-5000:])
    events = _events(s, api, job["id"])
    logs = " | ".join(e["text"] for e in events if e["kind"] == "log")
    assert "rank 1 of 2 died" in logs and "resumed from the checkpoint after epoch" in logs, logs[-3000:]
    assert [e["status"] for e in events if e["kind"] == "status"] == ["queued", "running", "queued", "running",
                                                                      "succeeded"]
    assert [round(e["epoch"]) for e in events if e["kind"] == "metric" and e["split"] == "val"] == [1, 2, 3, 4]
    assert not rank_processes(job["id"])


def test_cancel_stops_every_rank(stack, sentiment):
    s, api = stack, stack.api("alice")
    job = _submit(s, api, sentiment, "hf_text_classification", MODEL, {**TRAIN, "epochs": 50, "batch_size": 4})
    wait_for(lambda: len(rank_processes(job["id"])) == 3 and api.get(s.url(f"/api/jobs/{job['id']}/")).json()[
        "step"] > 3, 300, "job training")
    asked = time.monotonic()
    assert api.post(s.url(f"/api/jobs/{job['id']}/cancel/")).status_code in (200, 202)
    wait_for(lambda: not rank_processes(job["id"]), 60, "ranks to stop", interval=0.05)
    print(f"\ncancel: every rank gone {time.monotonic() - asked:.1f} s after the request")
    done = s.wait_job(api, job["id"], timeout=60)
    assert done["status"] == "cancelled" and done["artifacts"] == [] and done["epoch"] < 50
