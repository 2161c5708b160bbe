"""Subnormal floats on the CPU: the runtime's loop with and without flush-to-zero.

    .venv/bin/python bench/cpu_denormals.py [--epochs 6] [--rows 20000]

Trains the same MLP (256-256, Adam, batch 64) on the same separable table twice through
`workers.training.run()`: once with subnormals flushed to zero (what the runtime sets, see
`tune_cpu` in workers/training/loop.py) and once with torch's default (kept, IEEE gradual
underflow). As the model converges its gradients and Adam's second moments fall below 1.2e-38
and every operation on them takes a slow microcode path. Prints samples/s per epoch for both
(from the training log's per-epoch metric events) and the final accuracy of each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tests.stack import write_separable_csv  # noqa: E402
from workers.datasets.tabular import ingest_csv  # noqa: E402
from workers.training import TrainSpec, run  # noqa: E402
from workers.training import loop  # noqa: E402
from workers.training.callbacks import Callback  # noqa: E402


class EpochSpeed(Callback):
    def __init__(self):
        self.rates: list[float] = []

    def on_log(self, state, control, split, values):
        if split == "train" and state.step % state.steps_per_epoch == 0:
            self.rates.append(values["samples_per_s"])


def train(ds: Path, out: Path, epochs: int, flush: bool) -> tuple[list[float], dict]:
    real = loop.tune_cpu

    def tune():
        real()
        torch.set_flush_denormal(flush)

    loop.tune_cpu = tune
    try:
        speed = EpochSpeed()
        result = run(TrainSpec("mlp", {"hidden_sizes": [256, 256]},
                               {"epochs": epochs, "batch_size": 64, "learning_rate": 1e-3, "seed": 0},
                               str(ds), str(out), device="cpu", log_interval=3600), [speed])
        return speed.rates, result.metrics
    finally:
        loop.tune_cpu = real


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--rows", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ingest_csv(write_separable_csv(tmp / "d.csv", n=args.rows), tmp / "ds")
        print(f"torch={torch.__version__} threads={torch.get_num_threads()} rows={args.rows} MLP 256-256 batch 64")
        for i, flush in enumerate((True, False, True)):  # again at the end: the machine did not just slow down
            rates, metrics = train(tmp / "ds", tmp / f"out{i}", args.epochs, flush)
            label = "flush to zero (runtime)" if flush else "gradual underflow (torch default)"
            print(f"{label:34s} samples/s per epoch: " + " ".join(f"{r:,.0f}" for r in rates)
                  + f"   accuracy {metrics['accuracy']:.4f}")


if __name__ == "__main__":
    main()
