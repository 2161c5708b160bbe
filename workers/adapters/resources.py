"""Per-job resource use, sampled by the worker's heartbeat thread (registry.Heartbeat).

A training worker runs one job at a time in its Celery pool process (`--concurrency 1`), with
its children: DataLoader workers, or for a multi-device job `torchrun` and its ranks. So the
job's process tree is the worker main process's descendants. Each beat the sampler reads it:
CPU % (the tree's CPU time over the interval; 100 = one core busy), resident memory (RSS, the
sum), and on CUDA through NVML the GPU memory and utilisation of the tree's own processes where
the driver gives per-process figures (`gpu_source: "process"`), else the worker's visible
devices (`"device"`: the whole GPU, which the job has to itself).

The samples go out with the heartbeat, one write per beat (`events.append_events`, kind
`resources`, fenced by the run's owner token): nothing is written per training step, and a
beat whose write fails keeps its samples for the next.
"""

from __future__ import annotations

import logging
import os
import time

import psutil

from webapp.jobs.events import Fenced, append_events
from webapp.jobs.models import Job
from workers.adapters import gpu

log = logging.getLogger(__name__)

MAX_BUFFERED = 120  # samples kept while the database cannot be reached (then the oldest go)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class TreeSampler:
    """CPU %, RSS and GPU use of a process's descendants (or of the process itself, `include_root`)."""

    def __init__(self, root_pid: int | None = None, include_root: bool = False):
        self.root = psutil.Process(root_pid or os.getpid())
        self.include_root = include_root
        self._prev: dict[tuple[int, float], tuple[float, float]] = {}  # (pid, created) -> (cpu s, at)

    def processes(self) -> list[psutil.Process]:
        procs = self.root.children(recursive=True)
        return [self.root, *procs] if self.include_root else procs

    def sample(self) -> dict:
        now = time.time()
        cpu_percent, rss, seen, pids = 0.0, 0, {}, []
        for p in self.processes():
            try:
                with p.oneshot():
                    key = (p.pid, p.create_time())
                    times = p.cpu_times()
                    used = times.user + times.system
                    rss += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            pids.append(p.pid)
            prev = self._prev.get(key)
            # A process seen last beat: its CPU time over the interval; one started since: since its start.
            base_used, base_at = prev if prev else (0.0, key[1])
            if now > base_at:
                cpu_percent += 100.0 * max(0.0, used - base_used) / (now - base_at)
            seen[key] = (used, now)
        self._prev = seen
        out = {"cpu_percent": round(cpu_percent, 1), "rss": rss, "processes": len(pids), "cpus": _cpu_count(),
               "t": round(now, 3)}
        out.update(gpu.process_usage(pids))
        return out


class JobResources:
    """The heartbeat's part: sample every beat (so the CPU interval is one beat), and while a job
    runs on this worker store the samples as its `resources` events."""

    def __init__(self, worker_name: str, sampler: TreeSampler | None = None):
        self.worker_name = worker_name
        self.sampler = sampler or TreeSampler()
        self._job: tuple | None = None  # (job id, owner token) the buffer belongs to
        self._buffer: list[dict] = []

    def beat(self) -> int:
        """One beat; returns the number of samples stored."""
        try:
            sample = self.sampler.sample()
        except Exception:  # noqa: BLE001 - a missed sample is not fatal
            log.exception("resource sample failed")
            return 0
        run = (Job.objects.filter(worker_name=self.worker_name, status=Job.Status.RUNNING)
               .order_by("-started_at").values_list("pk", "owner_token").first())
        if run != self._job:
            self._job, self._buffer = run, []
        if run is None:
            return 0
        self._buffer = [*self._buffer, sample][-MAX_BUFFERED:]
        try:
            append_events(run[0], [("resources", s) for s in self._buffer], token=run[1])
        except Fenced:  # the run ended or moved between the read and the write: not its samples
            self._buffer = []
            return 0
        except Exception:  # noqa: BLE001 - kept for the next beat
            log.warning("could not store %d resource samples of job %s", len(self._buffer), run[0], exc_info=True)
            return 0
        n, self._buffer = len(self._buffer), []
        return n
