"""Where a run trains, and the CPU settings it trains with: one home for both runtimes."""

from __future__ import annotations

import os

import torch


def pick_device(name: str = "auto") -> torch.device:
    """The named device; "auto" is CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def describe(device: torch.device) -> str:
    """The GPU's name, or how many CPU threads train (for the run's first log line)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"


def fit_cpu_threads() -> int:
    """Use as many intra-op threads as CPUs this process may run on. torch counts the machine's
    cores; a worker pinned with taskset or a cgroup cpuset (one per GPU, a container) would
    otherwise run more threads than CPUs, and they spin-wait on each other. Returns the count."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return torch.get_num_threads()
    if 0 < allowed < torch.get_num_threads():
        torch.set_num_threads(allowed)
    return torch.get_num_threads()


def tune_cpu() -> None:
    """CPU settings for training: threads as above, and subnormal floats flushed to zero. As a
    model converges its gradients and Adam's moments shrink into the subnormal range, where x86
    arithmetic is many times slower (bench/cpu_denormals.py measures it); flushing them changes
    no result that matters: the values lost are below 1.2e-38 (float32), far under any gradient
    that moves a weight.

    Flush-to-zero is a setting of the calling thread, inherited only by threads started after
    it: torch's intra-op pool must not exist yet, or its threads keep the slow path (each
    worker pool process calls this at its start, workers/adapters/worker.py; the call in each
    runtime's run() covers a fresh process)."""
    fit_cpu_threads()
    torch.set_flush_denormal(True)
