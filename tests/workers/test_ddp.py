"""Data-parallel training (workers/training/distributed.py) on the CPU with gloo: two ranks
started by torch.multiprocessing train the same model as one process with the same global batch,
stop at the same step when rank 0 is told to, and only rank 0 writes."""

from __future__ import annotations

import os
import time

import pytest

torch = pytest.importorskip("torch")

import torch.multiprocessing as mp  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from tests.stack import free_port  # noqa: E402
from tests.workers.test_training_loop import make_classification, make_spec  # noqa: E402
from workers.training import Callback, Control, run  # noqa: E402
from workers.training.distributed import Dist  # noqa: E402

# Two ranks average their slices' gradients (weighted by the slice sizes) where one process
# takes the mean over the whole batch: the same numbers, summed in another order. After 40 Adam
# steps the weights differ by float32 rounding only.
TOLERANCE = 1e-5


def _rank(rank: int, world: int, port: int, ds: str, out: str, train: dict, stop_at_step: int | None, q):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist = Dist.from_env(timeout_seconds=30)
    control = Control()
    callbacks = []
    if rank == 0 and stop_at_step is not None:
        class CancelAt(Callback):  # rank 0's reporter would set its live control the same way
            def on_step_end(self, state, _loop_control):
                if state.step == stop_at_step:
                    control.request_stop("cancel")
        callbacks = [CancelAt()]
    steps = []

    class Steps(Callback):
        def on_step_end(self, state, c):
            steps.append(state.step)
    try:
        result = run(make_spec(ds, out, **train), [*callbacks, Steps()], control, dist)
    finally:
        dist.close()
    q.put((rank, result.status, result.artifacts, steps[-1] if steps else 0, control.stop_reason))


def _spawn(world, ds, out, train, stop_at_step=None):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_rank, args=(r, world, port, str(ds), str(out), train, stop_at_step, q))
             for r in range(world)]
    for p in procs:
        p.start()
    results = sorted(q.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return results


@pytest.fixture(scope="module")
def cls_ds(tmp_path_factory):
    return make_classification(tmp_path_factory.mktemp("ddp-data"), n=200)


def test_two_ranks_train_the_same_weights_as_one_process(cls_ds, tmp_path):
    train = {"epochs": 3, "batch_size": 16, "seed": 4, "gpus": 2}  # 200 rows: 13 steps, the last of 8
    results = _spawn(2, cls_ds, tmp_path / "ddp", train)
    assert [r[:2] for r in results] == [(0, "succeeded"), (1, "succeeded")]
    assert results[0][2] and results[1][2] == []  # only rank 0 exports
    single = run(make_spec(cls_ds, tmp_path / "one", **{**train, "gpus": 1}))
    a = load_file(str(tmp_path / "ddp" / "artifacts" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "artifacts" / "model.safetensors"))
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"\n2 ranks vs one process: max |weight difference| {diff:.2e}")
    assert diff < TOLERANCE, diff
    assert single.metrics["accuracy"] >= 0.9
    # Checkpoints were written once (by rank 0), and a rerun of the finished job resumes.
    assert len(list((tmp_path / "ddp" / "checkpoints").glob("ckpt-*.pt"))) == 2


def test_a_stop_on_rank_0_stops_every_rank_at_the_same_step(cls_ds, tmp_path):
    train = {"epochs": 50, "batch_size": 8, "seed": 1, "gpus": 2}
    started = time.monotonic()
    results = _spawn(2, cls_ds, tmp_path / "ddp", train, stop_at_step=30)
    assert [(r[0], r[1], r[3], r[4]) for r in results] == [(0, "cancelled", 30, "cancel"), (1, "cancelled", 30, "cancel")]
    assert not (tmp_path / "ddp" / "artifacts" / "model.safetensors").exists()
    assert time.monotonic() - started < 60


def test_shards_cover_every_row_once():
    for n in (1, 7, 8, 31):
        for world in (2, 3):
            parts = [Dist(r, world, r, torch.device("cpu")).shard(n) for r in range(world)]
            rows = [i for p in parts for i in range(n)[p]]
            assert rows == list(range(n)) and max(len(range(n)[p]) for p in parts) - min(
                len(range(n)[p]) for p in parts) <= 1


def test_batch_norm_is_synchronised_across_gpus_only_and_keeps_the_plain_models_weights():
    from torch import nn

    from workers.training.loop import sync_batchnorm

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    plain, cpu_model, gpu_model = net(), net(), net()
    with torch.no_grad():
        plain(torch.randn(8, 1, 8, 8))  # running statistics that differ from the initial ones
    cpu_model.load_state_dict(plain.state_dict())
    gpu_model.load_state_dict(plain.state_dict())
    assert not sync_batchnorm(cpu_model, torch.device("cpu"))  # gloo: each rank its own statistics
    assert isinstance(cpu_model[1], nn.BatchNorm2d) and not isinstance(cpu_model[1], nn.SyncBatchNorm)
    assert sync_batchnorm(gpu_model, torch.device("cuda", 0))  # the swap itself needs no GPU
    assert isinstance(gpu_model[1], nn.SyncBatchNorm)
    assert not sync_batchnorm(nn.Sequential(nn.Linear(2, 2)), torch.device("cuda", 0))  # nothing to swap
    # The same parameters and buffers under the same names (checkpoints, exports), and in
    # evaluation (no collective) the same outputs.
    a, b = plain.state_dict(), gpu_model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(5, 1, 8, 8)
    plain.eval(), gpu_model.eval()
    assert torch.equal(plain(x), gpu_model(x))
