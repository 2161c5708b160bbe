"""Throughput of the full path vs a bare PyTorch loop, same model, data and settings.

    .venv/bin/python bench/train_overhead.py [--rows 50000] [--epochs 10] [--rounds 3] [--device auto]

1. bare: a minimal hand-written loop (data as device tensors, shuffle, step, eval per epoch);
2. runtime: `workers.training.run()` in-process, no callbacks (checkpoints, samples, metrics);
3. full: the real stack (redis-server, Celery worker, Daphne) with a job submitted over the API;
   the worker's Reporter stores and publishes events while it trains.
The three run interleaved for --rounds rounds (a noisy neighbour on a shared machine slows each
alike) and the best of each counts. Prints samples/s for each and the ratios runtime/bare and
full/bare (target ≥ 0.97).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import models_zoo  # noqa: E402
from workers.datasets.tabular import ingest_csv  # noqa: E402
from workers.training import TrainSpec, run  # noqa: E402
from workers.training.data import load_cache  # noqa: E402
from workers.training.loop import evaluate, pick_device  # noqa: E402

MODEL = {"hidden_sizes": [256, 256], "activation": "relu", "dropout": 0.0, "norm": "none"}


def make_csv(path: Path, rows: int, cols: int = 32, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, cols)).astype(np.float32)
    W = rng.normal(size=(cols, classes))
    y = (X @ W).argmax(1)
    with open(path, "w") as f:
        f.write(",".join(f"f{i}" for i in range(cols)) + ",label\n")
        for r, lab in zip(X, y):
            f.write(",".join(f"{v:.4f}" for v in r) + f",c{lab}\n")


def bare(ds_dir: Path, train: dict, device: torch.device) -> float:
    torch.manual_seed(train["seed"])
    data = load_cache(ds_dir, device)
    model = models_zoo.build_model("mlp", MODEL, data.info).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=train["learning_rate"])
    n, bs = len(data.X_train), train["batch_size"]
    steps = math.ceil(n / bs)
    t0 = time.perf_counter()
    for epoch in range(train["epochs"]):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).to(device)
        total = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for i in range(steps):
            idx = perm[i * bs : (i + 1) * bs]
            out = model(data.X_train[idx])
            loss = F.cross_entropy(out, data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()  # a careful loop tracks loss and accuracy on the device too
            correct += (out.detach().argmax(1) == data.y_train[idx]).sum()
        total.item(), correct.item()
        evaluate(model, data, max(bs, 1024))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n * train["epochs"] / (time.perf_counter() - t0)


def runtime(ds_dir: Path, train: dict, device: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        result = run(TrainSpec("mlp", MODEL, train, str(ds_dir), out, device=device))
    return result.metrics["samples_per_s"]


class Full:
    """The real stack (redis-server, Celery worker, Daphne), started once; each call trains one job."""

    def __init__(self, csv: Path):
        from tests.stack import Stack

        self.stack = Stack(env={k: v for k, v in os.environ.items() if k.startswith("TRAINYARD_")}).start()
        self.api = self.stack.api("alice")
        with open(csv, "rb") as f:
            ds = self.api.post(self.stack.url("/api/datasets/"), files={"file": ("bench.csv", f)}).json()
        self.dataset = self.stack.wait_dataset(self.api, ds["id"], timeout=600)["id"]

    def __call__(self, train: dict) -> float:
        api, stack = self.api, self.stack
        job = api.post(stack.url("/api/jobs/"), json={"dataset": self.dataset, "architecture": "mlp",
                                                      "model_config": MODEL, "train_config": train}).json()
        job = stack.wait_job(api, job["id"], timeout=1800, interval=2.0)  # polling costs CPU too
        assert job["status"] == "succeeded", job
        events = api.get(stack.url(f"/api/jobs/{job['id']}/events/")).json()["events"]
        print(f"    (full path job: {len(events)} events stored and published)")
        return job["metrics"]["samples_per_s"]

    def close(self) -> None:
        self.stack.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each way counts")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-full", action="store_true", help="no real stack (e.g. on a GPU box without Redis)")
    args = ap.parse_args()
    device = pick_device(args.device)
    train = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": 1e-3, "optimizer": "adam",
             "seed": 0}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_csv(tmp / "bench.csv", args.rows)
        ingest_csv(tmp / "bench.csv", tmp / "ds")
        print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} rows={args.rows} "
              f"epochs={args.epochs} batch={args.batch_size} model=MLP{MODEL['hidden_sizes']}")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
        full = None if args.skip_full else Full(tmp / "bench.csv")
        results: dict[str, list[float]] = {"bare": [], "runtime": [], "full": []}
        try:
            # Interleaved, so a noisy neighbour on a shared machine slows every way alike.
            for r in range(args.rounds):
                results["bare"].append(bare(tmp / "ds", train, device))
                results["runtime"].append(runtime(tmp / "ds", train, args.device))
                if full is not None:
                    results["full"].append(full(train))
                print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in results.items() if v))
        finally:
            if full is not None:
                full.close()
        b = max(results["bare"])
        print(f"bare loop:     {b:10.0f} samples/s (best of {args.rounds})")
        r = max(results["runtime"])
        print(f"runtime run(): {r:10.0f} samples/s   ratio runtime/bare = {r / b:.3f}")
        if results["full"]:
            f = max(results["full"])
            print(f"full path:     {f:10.0f} samples/s   ratio full/bare    = {f / b:.3f}")


if __name__ == "__main__":
    main()
