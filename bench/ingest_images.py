"""Image ZIP ingest throughput and memory: MNIST-sized synthetic digits.

    .venv/bin/python bench/ingest_images.py [--images 60000] [--size 28] [--workers N] [--processes 1,2] [--keep DIR]

Builds a ZIP of 10 class folders of grayscale PNGs (noise plus a class-dependent pattern,
generated in worker processes) in a temporary directory, then ingests it in a fresh Python
process, so that the building's memory does not count, and prints the build time, the ingest
time, images per second and the ingest process's peak RSS (ru_maxrss), next to that process's
RSS just before ingesting (the interpreter plus numpy and Pillow). The ingest runs once per
`--processes` value per round, interleaved, and the summary gives each one's best images/s and its
ratio to the first (decoding in 1 process against 2, by default).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _digit(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """A noisy image whose structure depends on the class: a bar at a class-dependent angle and
    a blob at a class-dependent place, both jittered."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    angle = np.pi * label / 10 + rng.normal(0, 0.08)
    dist = np.abs(x * np.sin(angle) - y * np.cos(angle))
    bar = np.exp(-(dist / 0.07) ** 2)
    cx, cy = 0.3 * np.cos(2 * np.pi * label / 10), 0.3 * np.sin(2 * np.pi * label / 10)
    cx, cy = cx + rng.normal(0, 0.04), cy + rng.normal(0, 0.04)
    blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.01)
    img = 200 * np.maximum(bar, blob) + rng.normal(0, 20, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def _make_chunk(args: tuple[int, int, int]) -> list[tuple[str, bytes]]:
    from PIL import Image

    start, stop, size = args
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, stop):
        label = i % 10
        buf = io.BytesIO()
        Image.fromarray(_digit(label, rng, size)).save(buf, format="PNG")
        out.append((f"digits/{label}/{i:05d}.png", buf.getvalue()))
    return out


def build(path: Path, n: int, size: int, workers: int) -> None:
    chunk = 2_000
    jobs = [(s, min(n, s + chunk), size) for s in range(0, n, chunk)]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, Pool(workers) as pool:
        for items in pool.imap(_make_chunk, jobs):
            for name, data in items:
                zf.writestr(name, data)


def ingest_child(source: str, out: str) -> None:
    """Runs in the fresh process: ingest, then one JSON line of figures."""
    from workers.datasets.images import ingest_image_zip

    before = _peak_rss_mib()
    t = time.perf_counter()
    info = ingest_image_zip(Path(source), Path(out), processes=int(os.environ.get("BENCH_PROCESSES", "1")))
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "num_rows": info["num_rows"], "input_shape": info["input_shape"],
                      "channels": info["channels"], "rss_before_mib": before, "peak_rss_mib": _peak_rss_mib(),
                      "skipped": len(info["skipped"])}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=60_000)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--processes", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2],
                    help="decoding processes to compare, e.g. 1,2 (the ingest's `processes`)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="build the ZIP and the cache here instead of a temp dir")
    ap.add_argument("--ingest-child", nargs=2, metavar=("ZIP", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ingest_child:
        ingest_child(*args.ingest_child)
        return

    with tempfile.TemporaryDirectory() as tmp:
        d = args.keep or Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        source, out = d / "digits.zip", d / "cache"
        t = time.perf_counter()
        build(source, args.images, args.size, args.workers)
        build_s = time.perf_counter() - t
        print(f"build:   {args.images} PNGs {args.size}x{args.size} L, {source.stat().st_size / 2**20:.1f} MiB ZIP, "
              f"{build_s:.1f} s ({args.workers} processes)")
        rates: dict[int, list[float]] = {p: [] for p in args.processes}
        for round_ in range(args.rounds):  # interleaved, so a noisy neighbour slows each alike
            for processes in args.processes:
                shutil.rmtree(out, ignore_errors=True)
                child = subprocess.run([sys.executable, __file__, "--ingest-child", str(source), str(out)],
                                       capture_output=True, text=True, cwd=ROOT,
                                       env={**os.environ, "BENCH_PROCESSES": str(processes)})
                if child.returncode:
                    sys.exit(child.stderr)
                r = json.loads(child.stdout.strip().splitlines()[-1])
                rates[processes].append(r["num_rows"] / r["seconds"])
                cache = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
                print(f"round {round_ + 1}, {processes} process(es): {r['num_rows']} images → {r['input_shape']} "
                      f"{r['channels']}, {r['skipped']} skipped, {cache / 2**20:.1f} MiB cache; {r['seconds']:.2f} s, "
                      f"{r['num_rows'] / r['seconds']:.0f} images/s, peak RSS {r['peak_rss_mib']:.1f} MiB "
                      f"(parent process; {r['rss_before_mib']:.1f} MiB before ingesting)")
        base = max(rates[args.processes[0]])
        for processes, seen in rates.items():
            print(f"{processes} process(es): {max(seen):.0f} images/s best of {len(seen)}, "
                  f"{max(seen) / base:.2f}× {args.processes[0]}")


if __name__ == "__main__":
    main()
