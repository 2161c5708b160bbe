"""Data-parallel scaling: samples/s of the training runtime on 1, 2, … ranks, same global batch.

    .venv/bin/python bench/ddp_scaling.py [--ranks 1,2] [--rows 60000] [--epochs 3] [--batch 1024]
    .venv/bin/python bench/ddp_scaling.py --dry-run      # tiny, CPU, seconds

Each count runs `workers.training.run()` under torchrun (`python -m torch.distributed.run
--standalone --nproc-per-node N`, the way a multi-device job runs: workers/adapters/ddp.py),
gloo on the CPU, NCCL on GPUs; 1 is the one-process path (no torchrun). On a GPU machine the
default counts are every GPU count 1 … torch.cuda.device_count(). The figure is rank 0's
samples/s over the training epochs (global samples / train time, evaluation excluded), and the
scaling efficiency is samples/s(N) / (N × samples/s(1)). On CPU the ranks share the machine's
cores (each gets cores / N threads), so CPU "scaling" shows the cost of the collectives, not a
speed-up; on a machine shared with other work, one process's intra-op threads wait on each
other while a neighbour holds a core, which N one-thread ranks do not (the load average is
printed). The model is an MLP wide enough that each step is compute, not launch, bound.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_dataset(directory: Path, rows: int, features: int) -> Path:
    import numpy as np

    from workers.datasets.tabular import ingest_csv

    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, features)).astype("float32")
    w = rng.normal(size=features)
    y = np.where(X @ w > 0, "pos", "neg")
    src = directory / "data.csv"
    with open(src, "w") as f:
        f.write(",".join(f"x{i}" for i in range(features)) + ",label\n")
        for row, label in zip(X, y):
            f.write(",".join(f"{v:.4f}" for v in row) + f",{label}\n")
    out = directory / "ds"
    ingest_csv(src, out)
    return out


def rank_main(cfg_path: str) -> int:
    """One rank under torchrun (or the one process): train, rank 0 writes its samples/s."""
    from workers.training import TrainSpec, run
    from workers.training.distributed import Dist

    cfg = json.loads(Path(cfg_path).read_text())
    dist = Dist.from_env(120)
    spec = TrainSpec("mlp", {"hidden_sizes": cfg["hidden"]}, cfg["train"], cfg["dataset"], cfg["out"],
                     log_interval=1e9, num_samples=0)
    result = run(spec, [], None, dist)
    if dist is None or dist.is_main:
        Path(cfg["result"]).write_text(json.dumps({"samples_per_s": result.metrics["samples_per_s"],
                                                    "accuracy": result.metrics.get("accuracy")}))
    if dist is not None:
        dist.close()
    return 0


def measure(n: int, work: Path, dataset: Path, args) -> dict:
    out = work / f"run-{n}"
    cfg = {"hidden": args.hidden, "dataset": str(dataset), "out": str(out), "result": str(work / f"result-{n}.json"),
           "train": {"epochs": args.epochs, "batch_size": args.batch, "learning_rate": 1e-3, "seed": 0, "gpus": n,
                     "mixed_precision": "off"}}
    cfg_path = work / f"cfg-{n}.json"
    cfg_path.write_text(json.dumps(cfg))
    me = [sys.executable, str(Path(__file__).resolve()), "--rank-worker", str(cfg_path)]
    cmd = me if n == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc-per-node={n}", *me[1:]]
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // n)), PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    res = json.loads((work / f"result-{n}.json").read_text())
    res["wall_s"] = time.perf_counter() - started
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: a smoke test of the bench")
    ap.add_argument("--ranks", default="", help="comma-separated rank counts (default 1,2; every GPU count on CUDA)")
    ap.add_argument("--rows", type=int, default=60_000)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--hidden", default="1024,1024")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--rank-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_worker:
        return rank_main(args.rank_worker)
    import torch

    if args.dry_run:
        args.rows, args.features, args.hidden, args.epochs, args.batch = 2000, 16, "64", 1, 64
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the dry run is the CPU path, on any machine
    args.hidden = [int(h) for h in args.hidden.split(",")]
    gpus = 0 if args.dry_run else torch.cuda.device_count()
    counts = [int(c) for c in args.ranks.split(",")] if args.ranks else (list(range(1, gpus + 1)) if gpus > 1 else [1, 2])
    device = f"{gpus} × {torch.cuda.get_device_name(0)}" if gpus else f"CPU ({os.cpu_count()} cores), gloo"
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"DDP scaling on {device}{load}: MLP {args.hidden}, {args.rows} rows × {args.features}, "
          f"global batch {args.batch}, {args.epochs} epochs")
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        work = Path(tmp)
        dataset = make_dataset(work, args.rows, args.features)
        results = {n: measure(n, work, dataset, args) for n in counts}
    base = results[counts[0]]["samples_per_s"] / counts[0]
    for n, r in results.items():
        eff = r["samples_per_s"] / (n * base) if base else 0.0
        print(f"ranks {n}: {r['samples_per_s']:.0f} samples/s, scaling efficiency {eff:.2f} "
              f"(accuracy {r['accuracy']:.3f}, wall {r['wall_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
