"""GPU inventory and live telemetry for the worker registry.

NVML (`nvidia-ml-py`) when it loads: index, name, total/used memory, utilisation, temperature,
CUDA capability. Without NVML, torch gives what it can (name, total memory, capability; used
memory of this process only; no utilisation or temperature). On a CPU-only machine: [] (the
admin shows "CPU"). Never raises: a broken driver reads as "no GPU", with the reason logged.
"""

from __future__ import annotations

import logging
import os

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


def describe(gpus: list[dict]) -> str:
    """'NVIDIA H100 80GB HBM3 (79.6 GB)' / 'CPU'."""
    if not gpus:
        return "CPU"
    g = gpus[0]
    total = g.get("memory_total")
    extra = f" ({total / 1e9:.1f} GB)" if total else ""
    more = f" +{len(gpus) - 1}" if len(gpus) > 1 else ""
    return f"{g.get('name') or 'CUDA GPU'}{extra}{more}"
