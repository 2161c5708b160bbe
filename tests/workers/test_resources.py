"""Per-job resource samples: the process-tree sampler (real processes), the heartbeat's batched,
fenced writes, NVML's per-process figures, and the history's downsampling of the series."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from tests.webapp.factories import running_job
from webapp.jobs import downsample
from webapp.jobs.models import Job, JobEvent
from workers.adapters import gpu, resources
from workers.adapters.resources import JobResources, TreeSampler

BUSY = "import time\nt = time.time()\nwhile time.time() - t < 30: pass\n"


@pytest.fixture
def busy_child():
    proc = subprocess.Popen([sys.executable, "-c", BUSY])
    yield proc
    proc.kill()
    proc.wait()


def test_the_sampler_reads_cpu_and_memory_of_the_process_tree(busy_child):
    sampler = TreeSampler()  # this test process's descendants: the busy child
    first = sampler.sample()
    import time

    time.sleep(1.0)
    second = sampler.sample()
    assert first["processes"] >= 1 and second["processes"] >= 1
    assert second["rss"] > 1_000_000  # a Python interpreter's resident memory
    # A busy loop: up to one core (less on a loaded machine), never more than the machine has.
    assert 5 < second["cpu_percent"] <= 100 * second["cpus"] + 5
    assert second["t"] > first["t"]


def _nvml(per_process: bool):
    class Mem:
        total, used = 24_000_000_000, 9_000_000_000

    def running(h):
        return [types.SimpleNamespace(pid=4242, usedGpuMemory=3_000_000_000),
                types.SimpleNamespace(pid=1, usedGpuMemory=6_000_000_000)] if per_process else []

    def util(h, since):
        if not per_process:
            raise RuntimeError("not supported")
        return [types.SimpleNamespace(pid=4242, smUtil=71, memUtil=20)]

    return types.SimpleNamespace(
        nvmlDeviceGetCount=lambda: 1, nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetMemoryInfo=lambda h: Mem, nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=88),
        nvmlDeviceGetComputeRunningProcesses=running, nvmlDeviceGetProcessUtilization=util)


def test_gpu_figures_are_the_processes_own_when_nvml_gives_them(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu, "_nvml", lambda: _nvml(True))
    assert gpu.process_usage([4242]) == {"gpu_memory": 3_000_000_000, "gpu_memory_total": 24_000_000_000,
                                         "gpu_util": 71.0, "gpu_source": "process"}
    monkeypatch.setattr(gpu, "_nvml", lambda: _nvml(False))  # no per-process figures: the device's
    assert gpu.process_usage([4242]) == {"gpu_memory": 9_000_000_000, "gpu_memory_total": 24_000_000_000,
                                         "gpu_util": 88.0, "gpu_source": "device"}
    monkeypatch.setattr(gpu, "_nvml", lambda: None)  # CPU machine
    assert gpu.process_usage([4242]) == {}


class FakeSampler:
    def __init__(self):
        self.n = 0

    def sample(self):
        self.n += 1
        return {"cpu_percent": 10.0 * self.n, "rss": 1000 * self.n, "processes": 1, "cpus": 2, "t": 1000.0 + self.n}


def test_samples_go_with_the_beat_to_the_running_job_only_fenced(alice, monkeypatch):
    res = JobResources("w@h", sampler=FakeSampler())
    assert res.beat() == 0  # no job runs here
    job = running_job(alice)
    Job.objects.filter(pk=job.pk).update(worker_name="w@h", owner_token=3)
    assert res.beat() == 1
    # A write that fails keeps its sample: the next beat sends both, in one write.
    real = resources.append_events
    monkeypatch.setattr(resources, "append_events", lambda *a, **k: (_ for _ in ()).throw(OSError("db down")))
    assert res.beat() == 0
    monkeypatch.setattr(resources, "append_events", real)
    assert res.beat() == 2
    rows = list(JobEvent.objects.filter(job=job, kind="resources").order_by("seq").values_list("data", flat=True))
    assert [r["rss"] for r in rows] == [2000, 3000, 4000] and rows[0]["cpu_percent"] == 20.0
    # The run lost its lease between the read and the write: its samples are dropped, not stored.
    monkeypatch.setattr(resources, "append_events",
                        lambda job_id, events, token: real(job_id, events, token=token + 1))
    assert res.beat() == 0
    monkeypatch.setattr(resources, "append_events", real)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)
    assert res.beat() == 0
    assert JobEvent.objects.filter(job=job, kind="resources").count() == 3


def test_history_downsamples_resource_series_and_keeps_short_ones_whole(alice):
    from webapp.jobs.events import append_events

    job = running_job(alice)
    append_events(job.pk, [("resources", {"t": 1000.0 + i, "cpu_percent": float(i % 7), "rss": 10_000 + i,
                                          "processes": 1, "cpus": 2}) for i in range(1500)])
    h = downsample.history(job, points=200)
    kept = [e for e in h["events"] if e["kind"] == "resources"]
    assert 200 <= len(kept) <= 400 and h["omitted"]["resources"] == 1500 - len(kept)
    assert kept[0]["t"] == 1000.0 and kept[-1]["t"] == 2499.0  # the ends stay
    small = running_job(alice)
    append_events(small.pk, [("resources", {"t": float(i), "cpu_percent": 1.0, "rss": 1}) for i in range(5)])
    assert len([e for e in downsample.history(small)["events"] if e["kind"] == "resources"]) == 5
