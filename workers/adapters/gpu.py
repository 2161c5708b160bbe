"""GPU inventory and live telemetry for the worker registry.

NVML (`nvidia-ml-py`) when it loads: index, name, total/used memory, utilisation, temperature,
CUDA capability. Without NVML, torch gives what it can (name, total memory, capability; used
memory of this process only; no utilisation or temperature). On a CPU-only machine: [] (the
admin shows "CPU"). Never raises: a broken driver reads as "no GPU", with the reason logged.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)

_nvml_ok: bool | None = None


def _nvml():
    global _nvml_ok
    if _nvml_ok is False:
        return None
    try:
        import pynvml  # nvidia-ml-py

        if not _nvml_ok:
            pynvml.nvmlInit()
            _nvml_ok = True
        return pynvml
    except Exception as exc:  # noqa: BLE001 - no library, no driver, no device
        if _nvml_ok is None:
            log.info("NVML not available (%s); GPU telemetry from torch if any", exc)
        _nvml_ok = False
        return None


def _visible(count: int) -> list[int]:
    """Physical indices visible to this process (CUDA_VISIBLE_DEVICES, numeric form)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return list(range(count))
    out = []
    for part in env.split(","):
        part = part.strip()
        if part.isdigit() and int(part) < count:
            out.append(int(part))
        elif part and not part.isdigit():
            return list(range(count))  # UUID form: report all, cannot map cheaply
        else:
            break  # CUDA stops at the first invalid entry
    return out


def _from_nvml(pynvml) -> list[dict]:
    gpus = []
    for i in _visible(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        name = pynvml.nvmlDeviceGetName(h)
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        gpu = {"index": i, "name": name.decode() if isinstance(name, bytes) else name,
               "memory_total": int(mem.total), "memory_used": int(mem.used),
               "utilization": None, "temperature": None, "capability": None, "source": "nvml"}
        try:
            gpu["utilization"] = int(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
        except Exception:  # noqa: BLE001 - not supported on some boards / MIG
            pass
        try:
            gpu["temperature"] = int(pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))
        except Exception:  # noqa: BLE001
            pass
        try:
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            gpu["capability"] = f"{major}.{minor}"
        except Exception:  # noqa: BLE001
            pass
        gpus.append(gpu)
    return gpus


def _from_torch() -> list[dict]:
    # Ask without creating a CUDA context in the parent process (the pool forks later).
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"index": i, "name": p.name, "memory_total": int(p.total_memory),
                     "memory_used": None, "utilization": None, "temperature": None,
                     "capability": f"{p.major}.{p.minor}", "source": "torch"})
    return gpus


def telemetry() -> list[dict]:
    """One dict per visible GPU (see module doc); [] on a CPU-only machine."""
    try:
        pynvml = _nvml()
        if pynvml is not None:
            return _from_nvml(pynvml)
        return _from_torch()
    except Exception as exc:  # noqa: BLE001 - telemetry must never take the worker down
        log.warning("GPU telemetry failed: %s", exc)
        return []


def _process_figures(pynvml, handle, pids: set[int]) -> tuple[int | None, int | None]:
    """(memory, utilisation %) of these processes on one device from NVML's per-process
    figures; None where the driver gives none (no such process on it, MIG, a container's
    own pid namespace)."""
    memory = util = None
    try:
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if p.pid in pids and p.usedGpuMemory is not None:
                memory = (memory or 0) + int(p.usedGpuMemory)
    except Exception:  # noqa: BLE001 - not supported
        pass
    try:
        # Samples of the last second or so (timestamps in microseconds).
        since = int((time.time() - 2) * 1e6)
        samples = [s for s in pynvml.nvmlDeviceGetProcessUtilization(handle, since) if s.pid in pids]
        if samples:
            util = max(int(s.smUtil) for s in samples)
    except Exception:  # noqa: BLE001 - not supported, or no sample in the window
        pass
    return memory, util


def process_usage(pids) -> dict:
    """GPU use of a job's processes for the per-job resource samples: `gpu_memory` (bytes),
    `gpu_util` (%), `gpu_memory_total` of the devices counted and `gpu_source` ("process": the
    processes' own figures; "device": the whole devices this worker sees, when NVML gives no
    per-process figure for them). {} on a machine without NVML or GPUs."""
    try:
        pynvml = _nvml()
        if pynvml is None:
            return {}
        pids = set(pids)
        mem_own, utils_own, mem_dev, util_dev, total, total_own = 0, [], 0, [], 0, 0
        found = False
        for i in _visible(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            info = pynvml.nvmlDeviceGetMemoryInfo(h)
            total += int(info.total)
            mem_dev += int(info.used)
            try:
                util_dev.append(int(pynvml.nvmlDeviceGetUtilizationRates(h).gpu))
            except Exception:  # noqa: BLE001
                pass
            memory, util = _process_figures(pynvml, h, pids)
            if memory is not None:
                found = True
                mem_own += memory
                total_own += int(info.total)
                if util is not None:
                    utils_own.append(util)
                elif util_dev:
                    utils_own.append(util_dev[-1])
        if not total:
            return {}
        if found:
            return {"gpu_memory": mem_own, "gpu_memory_total": total_own,
                    "gpu_util": round(sum(utils_own) / len(utils_own), 1) if utils_own else None,
                    "gpu_source": "process"}
        return {"gpu_memory": mem_dev, "gpu_memory_total": total,
                "gpu_util": round(sum(util_dev) / len(util_dev), 1) if util_dev else None, "gpu_source": "device"}
    except Exception as exc:  # noqa: BLE001 - telemetry must never take the worker down
        log.warning("GPU process telemetry failed: %s", exc)
        return {}


def describe(gpus: list[dict]) -> str:
    """'NVIDIA H100 80GB HBM3 (79.6 GB)' / 'CPU'."""
    if not gpus:
        return "CPU"
    g = gpus[0]
    total = g.get("memory_total")
    extra = f" ({total / 1e9:.1f} GB)" if total else ""
    more = f" +{len(gpus) - 1}" if len(gpus) > 1 else ""
    return f"{g.get('name') or 'CUDA GPU'}{extra}{more}"
