"""Throughput of the full path vs a bare PyTorch loop, same model, data and settings.

    .venv/bin/python bench/train_overhead.py [--rows 200000] [--epochs 10] [--rounds 3] [--device auto]
    .venv/bin/python bench/train_overhead.py --data cifar --model resnet18 [--images 10000] [--skip-full]

The default trains an MLP on a generated tabular CSV. `--data cifar` trains on a CIFAR-10-shaped
synthetic image set instead (3×32×32 uint8, 10 classes, a ZIP of PNGs ingested like an upload)
with `--model mlp | cnn | lenet | resnet18` (cnn: the form's default conv stack; lenet: the LeNet-5
preset; resnet18: torchvision's, with the small-image stem). On CUDA the bare loop then uses bf16
autocast and channels_last, as the runtime does for images.

1. bare: a minimal hand-written loop (data as device tensors, shuffle, step, eval per epoch);
2. runtime: `workers.training.run()` in-process, no callbacks (checkpoints, samples, metrics);
3. full: the real stack (redis-server, Celery worker, uvicorn) with a job submitted over the API;
   the worker's Reporter stores and publishes events while it trains.
The three run interleaved for --rounds rounds (a noisy neighbour on a shared machine slows each
alike). Prints samples/s for each and the ratios runtime/bare and full/bare (target ≥ 0.97),
both as best of each way and as the median of the rounds' own ratios.

With `--data cifar` the runtime and full paths train without augmentation (`--augment off`), like
the bare loop; `--augment auto` measures what the default augmentation costs. `--compile on`
compiles the runtime's model (torch.compile): its samples/s is then the steady state from the end
of the first epoch to the last (the compile time is printed from the job's log).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
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
from workers.training.callbacks import Callback  # noqa: E402
from workers.training.data import load_cache  # noqa: E402
from workers.training.loop import evaluate, pick_device, tune_cpu  # noqa: E402

MODEL = {"hidden_sizes": [256, 256], "activation": "relu", "dropout": 0.0, "norm": "none"}
# --model: (registry name, model config) for the image set.
IMAGE_MODELS = {
    "mlp": ("mlp", MODEL),
    "cnn": ("cnn", {"preset": "custom", "channels": [32, 64], "batch_norm": True, "hidden_size": 128}),
    "lenet": ("cnn", {"preset": "lenet"}),
    "resnet18": ("resnet", {"depth": "18", "small_input": "auto"}),
}


def make_csv(path: Path, rows: int, cols: int = 32, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, cols)).astype(np.float32)
    W = rng.normal(size=(cols, classes))
    y = (X @ W).argmax(1)
    with open(path, "w") as f:
        f.write(",".join(f"f{i}" for i in range(cols)) + ",label\n")
        for r, lab in zip(X, y):
            f.write(",".join(f"{v:.4f}" for v in r) + f",c{lab}\n")


def make_image_zip(path: Path, images: int, classes: int = 10, size: int = 32) -> None:
    """A CIFAR-10-shaped set: RGB size×size PNGs in class folders; each class a smooth colour
    template plus per-image noise and a random shift (learnable, not trivial)."""
    import io
    import zipfile

    from PIL import Image

    rng = np.random.default_rng(0)
    coarse = rng.uniform(0, 255, size=(classes, 3, 4, 4))
    templates = coarse.repeat(size // 4, axis=2).repeat(size // 4, axis=3)  # [K, 3, H, W]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(images):
            label = i % classes
            shift = rng.integers(-3, 4, size=2)
            img = np.roll(templates[label], tuple(shift), axis=(1, 2)) * 0.6 + rng.normal(0, 40, (3, size, size)) + 50
            buf = io.BytesIO()
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0), mode="RGB").save(buf, "PNG")
            zf.writestr(f"synthetic/class{label}/{i:05d}.png", buf.getvalue())


def bare(ds_dir: Path, train: dict, device: torch.device, arch: str = "mlp", model_config: dict = MODEL) -> float:
    torch.manual_seed(train["seed"])
    data = load_cache(ds_dir, device)
    model = models_zoo.build_model(arch, model_config, data.info).to(device)
    image, cuda = data.kind == "image", device.type == "cuda"
    amp = image and cuda  # as the runtime on CUDA; the tabular loop stays as it always was (fp32)
    if amp:
        model = model.to(memory_format=torch.channels_last)
        data.channels_last = True
    opt = torch.optim.Adam(model.parameters(), lr=train["learning_rate"])
    n, bs = len(data.X_train), train["batch_size"]
    steps = math.ceil(n / bs)
    if image:
        mean = torch.tensor(data.info["normalization"]["mean"], device=device).view(1, -1, 1, 1)
        std = torch.tensor(data.info["normalization"]["std"], device=device).view(1, -1, 1, 1).clamp(min=1e-6)
    t0 = time.perf_counter()
    for epoch in range(train["epochs"]):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).to(device)
        total = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for i in range(steps):
            idx = perm[i * bs : (i + 1) * bs]
            x, y = data.X_train[idx].to(device, non_blocking=True), data.y_train[idx].to(device, non_blocking=True)
            if image:  # uint8 on the device, normalised per batch
                x = x.float().div_(255.0).sub_(mean).div_(std)
                if amp:
                    x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()  # a careful loop tracks loss and accuracy on the device too
            correct += (out.detach().argmax(1) == y).sum()
        total.item(), correct.item()
        evaluate(model, data, max(bs, 1024), amp=amp)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n * train["epochs"] / (time.perf_counter() - t0)


class EpochClock(Callback):
    """Samples seen and the time at each epoch's end (after its evaluation, like the bare loop's
    epochs), and what torch.compile said."""

    def __init__(self):
        self.ends: list[tuple[float, int]] = []
        self.notes: list[str] = []

    def on_epoch_end(self, state, control):
        self.ends.append((time.perf_counter(), state.samples_seen))

    def on_message(self, state, control, level, text):
        if "torch.compile" in text:
            self.notes.append(text)


def runtime(ds_dir: Path, train: dict, device: str, arch: str = "mlp", model_config: dict = MODEL) -> float:
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as out:
        result = run(TrainSpec(arch, model_config, train, str(ds_dir), out, device=device), [clock])
    if train.get("compile") == "on":
        for note in clock.notes:
            print(f"    ({note})")
        if len(clock.ends) >= 3:  # steady state: from the end of epoch 1 (compiled by then) to the last
            (t0, n0), (t1, n1) = clock.ends[0], clock.ends[-1]
            return (n1 - n0) / (t1 - t0)
    return result.metrics["samples_per_s"]


class Full:
    """The real stack (redis-server, Celery worker, uvicorn), started once; each call trains one job."""

    def __init__(self, upload: Path, kind: str = "auto", arch: str = "mlp", model_config: dict = MODEL):
        from tests.stack import Stack

        self.arch, self.model_config = arch, model_config
        self.stack = Stack(env={k: v for k, v in os.environ.items() if k.startswith("TRAINYARD_")}).start()
        self.api = self.stack.api("alice")
        with open(upload, "rb") as f:
            ds = self.api.post(self.stack.url("/api/datasets/"), files={"file": (upload.name, f)},
                               data={} if kind == "auto" else {"kind": kind}).json()
        self.dataset = self.stack.wait_dataset(self.api, ds["id"], timeout=600)["id"]

    def __call__(self, train: dict) -> float:
        api, stack = self.api, self.stack
        job = api.post(stack.url("/api/jobs/"), json={"dataset": self.dataset, "architecture": self.arch,
                                                      "model_config": self.model_config,
                                                      "train_config": train}).json()
        job = stack.wait_job(api, job["id"], timeout=1800, interval=2.0)  # polling costs CPU too
        assert job["status"] == "succeeded", job
        events = api.get(stack.url(f"/api/jobs/{job['id']}/events/")).json()["events"]
        print(f"    (full path job: {len(events)} events stored and published)")
        return job["metrics"]["samples_per_s"]

    def close(self) -> None:
        self.stack.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=["tabular", "cifar"], default="tabular",
                    help="tabular: a generated CSV (the default); cifar: a CIFAR-10-shaped synthetic image set")
    ap.add_argument("--model", choices=sorted(IMAGE_MODELS), default="mlp",
                    help="with --data cifar: mlp, cnn (default conv stack), lenet or resnet18")
    ap.add_argument("--images", type=int, default=10_000, help="with --data cifar: number of images")
    ap.add_argument("--rows", type=int, default=200_000, help="tabular rows (200k: epochs of about a second here)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each way counts")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--augment", default="off", help="with --data cifar: the runtime's augmentation setting "
                    "(off, auto, crop, crop_flip, flip); the bare loop never augments, so auto measures its cost")
    ap.add_argument("--compile", default="off", choices=["off", "on"],
                    help="with --data cifar: torch.compile in the runtime and full paths (the bare loop stays eager)")
    ap.add_argument("--skip-full", action="store_true", help="no real stack (e.g. on a GPU box without Redis)")
    args = ap.parse_args()
    device = pick_device(args.device)
    # The bare loop gets the runtime's CPU settings (threads per allowed CPU, subnormals flushed
    # to zero; the setting is per process): the ratio measures overhead, not different numerics.
    tune_cpu()
    train = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": 1e-3, "optimizer": "adam",
             "seed": 0}
    if args.data == "cifar":  # the bare loop does not augment: neither do the others, unless asked
        train.update(augment=args.augment, compile=args.compile)
    if args.data == "tabular" and args.model != "mlp":
        ap.error("--model applies to --data cifar; the tabular set trains the MLP")
    arch, model_config = IMAGE_MODELS[args.model]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.data == "cifar":
            from workers.datasets import ingest

            upload, kind = tmp / "bench.zip", "image"
            make_image_zip(upload, args.images)
            ingest("image", upload, tmp / "ds", {"seed": 0})
            what = f"images={args.images} (3x32x32, 10 classes) model={args.model}"
        else:
            upload, kind = tmp / "bench.csv", "auto"
            make_csv(upload, args.rows)
            ingest_csv(upload, tmp / "ds")
            what = f"rows={args.rows} model=MLP{MODEL['hidden_sizes']}"
        print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} {what} "
              f"epochs={args.epochs} batch={args.batch_size}")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
        full = None if args.skip_full else Full(upload, kind, arch, model_config)
        results: dict[str, list[float]] = {"bare": [], "runtime": [], "full": []}
        try:
            # Interleaved, so a noisy neighbour on a shared machine slows every way alike.
            for r in range(args.rounds):
                results["bare"].append(bare(tmp / "ds", train, device, arch, model_config))
                results["runtime"].append(runtime(tmp / "ds", train, args.device, arch, model_config))
                if full is not None:
                    results["full"].append(full(train))
                print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in results.items() if v))
        finally:
            if full is not None:
                full.close()
        b = max(results["bare"])
        print(f"bare loop:     {b:10.0f} samples/s (best of {args.rounds})")
        for way, label in (("runtime", "runtime run()"), ("full", "full path")):
            if not results[way]:
                continue
            best = max(results[way])
            # Each round's ratio against the bare loop of the same round (run moments apart),
            # and their median: less sensitive to a slow round than the best of each way.
            per_round = [w / x for w, x in zip(results[way], results["bare"])]
            print(f"{label + ':':14s} {best:10.0f} samples/s   {way}/bare = {best / b:.3f} (best of each), "
                  f"{statistics.median(per_round):.3f} (median of rounds: "
                  + ", ".join(f"{x:.3f}" for x in per_round) + ")")


if __name__ == "__main__":
    main()
