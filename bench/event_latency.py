"""End-to-end event latency: worker emits an event → a browser-like websocket client has it.

    .venv/bin/python bench/event_latency.py [--viewers 0 1 200] [--epochs 30] [--pin]

Starts the real stack (redis-server, Celery worker, uvicorn), runs a training job per viewer
count, connects N authenticated websocket clients to the job, and prints p50/p95/max latency
(receive time minus the event's emit time `t`, one clock) and the job's throughput, then the
ratio of throughput with the most viewers to throughput with none: over the whole run (the
job's own samples/s, including the time the viewers connect) and while watched (from the stored
progress events stamped after every viewer is connected; the 0-viewer case uses the same window,
from its start).

--pin puts the training worker on the last CPU and everything else (uvicorn, Redis, this
process with its simulated browsers) on the others, for every case including the one with no
viewers: on a small machine the 200 simulated browsers run in this process and would otherwise
take CPU from the training they are measuring. A real deployment has the browsers elsewhere
and the web tier on other cores or hosts than the GPU workers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import websockets  # noqa: E402

from tests.integration.helpers import login  # noqa: E402
from tests.stack import PASSWORD, running_stack, write_separable_csv  # noqa: E402


_parsed: dict[str, dict] = {}


def parse(raw: str) -> dict:
    # Every viewer gets the same frame; a browser parses it in its own process, so the
    # simulated browsers share one parse instead of adding 200 to this process's work.
    if raw not in _parsed:
        if len(_parsed) > 64:
            _parsed.clear()
        _parsed[raw] = json.loads(raw)
    return _parsed[raw]


async def watch(url: str, headers: dict, latencies: list, stop: asyncio.Event, ready: list) -> None:
    async with websockets.connect(url, additional_headers=headers, open_timeout=60, max_size=2**22) as ws:
        ready.append(1)
        async for raw in ws:  # one pending receive per viewer, no timer wake-ups
            now = time.time()
            for ev in parse(raw).get("events", []):
                if "t" in ev:
                    latencies.append((now - ev["t"], ev.get("kind")))
                if ev.get("kind") == "status" and ev.get("status") in ("succeeded", "failed", "cancelled"):
                    stop.set()
            if stop.is_set():
                return


def steady_throughput(stack, api, job_id: str, since: float) -> float:
    """Samples/s of the training between the first progress event stamped after `since` (all
    viewers connected) and the last one: the job while watched, without the connection phase."""
    events, after = [], 0
    while True:
        page = api.get(stack.url(f"/api/jobs/{job_id}/events/?after={after}")).json()
        batch = page["events"] if isinstance(page, dict) else page
        if not batch:
            break
        events += batch
        after = batch[-1]["seq"]
    prog = [e for e in events if e["kind"] == "progress" and e["t"] >= since]
    if prog:  # up to the first event with every sample seen (not the export after it)
        top = max(e["samples_seen"] for e in prog)
        prog = prog[:next(i for i, e in enumerate(prog) if e["samples_seen"] == top) + 1]
    if len(prog) < 2 or prog[-1]["t"] <= prog[0]["t"]:
        return float("nan")
    return (prog[-1]["samples_seen"] - prog[0]["samples_seen"]) / (prog[-1]["t"] - prog[0]["t"])


async def run_case(stack, api, cookie: str, ds_id: str, viewers: int, train: dict) -> tuple[list, float, float]:
    job = api.post(stack.url("/api/jobs/"), json={"dataset": ds_id, "architecture": "mlp",
                                                  "model_config": {"hidden_sizes": [256, 256]},
                                                  "train_config": train}).json()
    url = stack.base_url.replace("http://", "ws://") + f"/ws/jobs/{job['id']}/"
    headers = {"Cookie": cookie, "Origin": stack.base_url}
    latencies: list[float] = []
    stop, ready = asyncio.Event(), []
    tasks = []
    for _ in range(viewers):
        tasks.append(asyncio.create_task(watch(url, headers, latencies, stop, ready)))
        await asyncio.sleep(0.005)
    while len(ready) < viewers and not all(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    watched_since = time.time()
    if tasks:
        deadline = time.monotonic() + 1800
        while not stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    done = await asyncio.to_thread(stack.wait_job, api, job["id"], timeout=1800, interval=1.0)
    steady = await asyncio.to_thread(steady_throughput, stack, api, job["id"], watched_since)
    return latencies, done["metrics"].get("samples_per_s", 0.0), steady


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else (values[0] if values else float("nan"))


def _session_pids(leader: int) -> list[int]:
    """Every process in the session (and process group) that `leader` started."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader:  # pgrp
            pids.append(int(stat.parent.name))
    return pids


def pin(leader: int, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of every process in `leader`'s process group."""
    for pid in _session_pids(leader):
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except OSError:
                pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--viewers", type=int, nargs="+", default=[0, 1, 200])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--pin", action="store_true", help="training worker on the last CPU, the rest elsewhere")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) < 2:
        sys.exit("--pin needs at least two CPUs")
    train = {"epochs": args.epochs, "batch_size": 64, "learning_rate": 1e-3}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, running_stack() as stack:
        api = stack.api("alice")
        with open(write_separable_csv(Path(tmp) / "d.csv", n=20_000), "rb") as f:
            ds = api.post(stack.url("/api/datasets/"), files={"file": ("d.csv", f)}).json()
        stack.wait_dataset(api, ds["id"], timeout=300)
        if args.pin:
            trainer, rest = {cpus[-1]}, set(cpus[:-1])
            pin(stack.procs["worker"].pid, trainer)
            for name in ("web", "redis"):
                pin(stack.procs[name].pid, rest)
            os.sched_setaffinity(0, rest)
            print(f"pinned: training worker on CPU {cpus[-1]}, uvicorn/Redis/viewers on CPU {sorted(rest)}")
        else:
            print(f"not pinned: everything shares CPUs {cpus}")
        session = login(stack, "alice", PASSWORD)
        cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
        throughput, steady_by = {}, {}
        for n in args.viewers:
            latencies, sps, steady = asyncio.run(run_case(stack, api, cookie, ds["id"], n, train))
            throughput[n], steady_by[n] = sps, steady
            ms = [x * 1000 for x, _ in latencies]
            # Progress events are stamped when the reporter flushes, the others when the training
            # code emits them: progress latency is the transport alone (database write, Redis,
            # uvicorn, socket), the rest adds the time an event waits in the reporter's batch.
            transport = [x * 1000 for x, kind in latencies if kind == "progress"]
            if n:
                print(f"{n:4d} viewers: {len(ms):6d} deliveries  p50 {pct(ms, 50):7.1f} ms  p95 {pct(ms, 95):7.1f} ms  "
                      f"max {max(ms):7.1f} ms  job {sps:,.0f} samples/s ({steady:,.0f} while watched)")
                if transport:
                    print(f"      transport only (flush → socket, {len(transport)} progress deliveries): "
                          f"p50 {pct(transport, 50):7.1f} ms  p95 {pct(transport, 95):7.1f} ms")
            else:
                print(f"   0 viewers: job {sps:,.0f} samples/s ({steady:,.0f} over the same window)")
        if 0 in throughput and max(args.viewers) > 0:
            top = max(args.viewers)
            print(f"throughput ratio {top} viewers / none: {throughput[top] / throughput[0]:.3f} over the whole run "
                  f"(incl. the viewers connecting), {steady_by[top] / steady_by[0]:.3f} while watched")


if __name__ == "__main__":
    main()
