"""An image dataset whose cache is 3× the worker's cache-memory cap, trained through the real stack
(redis-server, Celery workers, the web server, a job over the API), next to the same job on a
worker whose cap holds the whole cache in memory.

    .venv/bin/python bench/big_images.py [--images 24000] [--factor 3] [--epochs 2] [--batch-size 128]

Builds a CIFAR-10-shaped ZIP (bench/train_overhead.py's generator), then for each way starts a
stack whose training worker has TRAINYARD_CACHE_MEMORY_MB set (the cache / factor, or far above
it), ingests on a separate ingest worker, trains the default CNN and reads the training pool
process's memory from /proc: its RSS when idle before the job and its peak (VmHWM) after. Prints
per way: samples/s (the job's own, training time), idle RSS, peak RSS and the growth, and checks
the file-backed growth against cap + the model's needs, where the model's needs are what the
in-memory run grew beyond its cache (activations, optimizer, allocator slack).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _pool_child(stack, name: str) -> int:
    import psutil

    kids = psutil.Process(stack.procs[name].pid).children()
    if len(kids) != 1:
        raise RuntimeError(f"expected one pool process under {name}, found {len(kids)}")
    return kids[0].pid


def one_way(upload: Path, cap_mb: int, epochs: int, batch: int) -> dict:
    from tests.stack import Stack

    stack = Stack(worker_queues="train", env={"TRAINYARD_CACHE_MEMORY_MB": str(cap_mb)}).start()
    try:
        stack.start_worker("ingester", "ingest,infer")
        api = stack.api("alice")
        from trainyard_client import Client

        with Client(stack.base_url, token=stack.tokens["alice"]) as c:  # tus: larger than one request
            ds = c.upload_dataset(upload, kind="image")
        ds = stack.wait_dataset(api, ds["id"], timeout=900)
        if ds["status"] != "ready":
            raise RuntimeError(f"the ingest ended {ds['status']}: {ds.get('error')}\n{stack.logs()[-3000:]}")
        cache = sum(p.stat().st_size for p in (stack.data_dir / "datasets" / ds["id"]).glob("X_*.npy"))
        pid = _pool_child(stack, "worker")
        idle = _status(pid)["VmRSS"]
        job = api.post(stack.url("/api/jobs/"), json={
            "dataset": ds["id"], "architecture": "cnn", "model_config": {},
            "train_config": {"epochs": epochs, "batch_size": batch, "augment": "off", "seed": 0}})
        if job.status_code != 201:
            raise RuntimeError(f"the job was refused: {job.status_code} {job.text[:500]}")
        job = job.json()
        job = stack.wait_job(api, job["id"], timeout=3600, interval=2.0)
        if job["status"] != "succeeded":
            raise RuntimeError(f"the job {job['status']}: {job.get('error')}\n{stack.logs()[-3000:]}")
        events = api.get(stack.url(f"/api/jobs/{job['id']}/events/")).json()["events"]
        on_disk = any("read from disk" in (e.get("text") or "") for e in events)
        peak = _status(pid)["VmHWM"]
        return {"cap_mb": cap_mb, "cache": cache, "samples_per_s": job["metrics"]["samples_per_s"],
                "accuracy": job["metrics"]["accuracy"], "idle": idle, "peak": peak, "on_disk": on_disk}
    finally:
        stack.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=24_000)
    ap.add_argument("--factor", type=float, default=3.0, help="the cache is this many times the cap")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()

    from train_overhead import make_image_zip

    mib = 2**20
    with tempfile.TemporaryDirectory() as tmp:
        upload = Path(tmp) / "big.zip"
        make_image_zip(upload, args.images)
        cache_mb = args.images * 3 * 32 * 32 / mib
        cap_mb = max(1, math.floor(cache_mb / args.factor))
        print(f"{args.images} images 3×32×32: a {cache_mb:.1f} MiB cache; file-backed cap {cap_mb} MiB; "
              f"CNN, {args.epochs} epochs, batch {args.batch_size}, {os.cpu_count()} CPUs")
        ways = {"in memory": one_way(upload, 100 * 1024, args.epochs, args.batch_size),
                "from disk": one_way(upload, cap_mb, args.epochs, args.batch_size)}
    mem, disk = ways["in memory"], ways["from disk"]
    print("| way | cap | samples/s | val accuracy | idle RSS | peak RSS | growth |")
    print("|---|---|---|---|---|---|---|")
    for name, w in ways.items():
        print(f"| {name} | {w['cap_mb']} MiB | {w['samples_per_s']:,.0f} | {w['accuracy']:.4f} | "
              f"{w['idle'] / mib:.0f} MiB | {w['peak'] / mib:.0f} MiB | {(w['peak'] - w['idle']) / mib:.0f} MiB |")
    needs = max(0, (mem["peak"] - mem["idle"]) - mem["cache"])
    growth = disk["peak"] - disk["idle"]
    ratio = disk["samples_per_s"] / mem["samples_per_s"]
    print(f"model's needs (in-memory growth beyond its {mem['cache'] / mib:.1f} MiB cache): {needs / mib:.0f} MiB")
    print(f"from disk: growth {growth / mib:.0f} MiB vs cap + needs {(cap_mb * mib + needs) / mib:.0f} MiB: "
          f"{'under' if growth <= cap_mb * mib + needs else 'OVER'}; the job said it read from disk: {disk['on_disk']}; "
          f"in-memory job did not: {not mem['on_disk']}")
    print(f"throughput from disk / in memory: {ratio:.3f} (target ≥ 0.8)")


if __name__ == "__main__":
    main()
