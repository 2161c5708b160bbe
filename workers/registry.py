"""Worker registration and heartbeat (runs in the Celery worker's main process)."""

from __future__ import annotations

import logging
import os
import socket
import threading

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from webapp.cluster.models import Worker
from webapp.jobs.services import requeue_lost_jobs

log = logging.getLogger(__name__)


def gpu_inventory() -> list[dict]:
    """GPUs visible to this process, read without initialising CUDA (the pool forks later)."""
    try:
        import pynvml  # nvidia-ml-py, optional

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVML: fall back to torch's device count
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
        try:
            import torch

            return [{"index": i} for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        except Exception:  # noqa: BLE001
            return []
    gpus = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        util = pynvml.nvmlDeviceGetUtilizationRates(h)
        name = pynvml.nvmlDeviceGetName(h)
        gpus.append({
            "index": i,
            "name": name.decode() if isinstance(name, bytes) else name,
            "memory_total": mem.total,
            "memory_used": mem.used,
            "utilization": util.gpu,
        })
    return gpus


def register(name: str, queues: list[str]) -> None:
    gpus = gpu_inventory()
    device = "cuda:0" if gpus else "cpu"
    Worker.objects.update_or_create(
        name=name,
        defaults={
            "hostname": socket.gethostname(),
            "queues": ",".join(queues),
            "device": device,
            "device_name": gpus[0].get("name", "CUDA GPU") if gpus else "CPU",
            "gpus": gpus,
            "status": Worker.Status.ONLINE,
            "started_at": timezone.now(),
            "last_heartbeat": timezone.now(),
            "current_job": None,
        },
    )


def heartbeat(name: str) -> None:
    Worker.objects.filter(name=name).update(
        last_heartbeat=timezone.now(), status=Worker.Status.ONLINE, gpus=gpu_inventory()
    )


def set_offline(name: str) -> None:
    Worker.objects.filter(name=name).update(status=Worker.Status.OFFLINE, current_job=None)


def set_current_job(name: str | None, job_id) -> None:
    if name:
        Worker.objects.filter(name=name).update(current_job_id=job_id)


class Heartbeat(threading.Thread):
    def __init__(self, name: str):
        super().__init__(name="heartbeat", daemon=True)
        self.worker_name = name
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(settings.TRAINYARD_HEARTBEAT_SECONDS):
            try:
                close_old_connections()
                heartbeat(self.worker_name)
                # Every worker also watches for jobs whose worker died (F7); each moves once.
                for job_id in requeue_lost_jobs():
                    log.warning("requeued lost job %s", job_id)
            except Exception:  # noqa: BLE001 - a missed beat is not fatal
                log.exception("heartbeat failed")
        connection.close()
