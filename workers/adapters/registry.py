"""Worker registration and heartbeat (runs in the Celery worker's main process).

The rules about workers (liveness, drain, the current job, fit) are the scheduler's
(webapp/jobs/scheduler.py); this module writes this process's row and runs the periodic pass.
"""

from __future__ import annotations

import logging
import socket
import threading

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models.functions import Now
from django.utils import timezone

from webapp.cluster.models import Worker
from webapp.jobs import lifecycle, scheduler
from webapp.sweeps import services as sweeps
from workers.adapters import gpu
from workers.adapters.resources import JobResources

log = logging.getLogger(__name__)


def gpu_inventory() -> list[dict]:
    """GPUs visible to this process with live telemetry (workers/adapters/gpu.py); [] on CPU."""
    return gpu.telemetry()


def device_count(gpus: list[dict]) -> int:
    """Devices this worker offers one job: TRAINYARD_WORKER_DEVICES when set (on a CPU machine:
    gloo processes), else its visible GPUs, or 1."""
    return settings.TRAINYARD_WORKER_DEVICES or len(gpus) or 1


def register(name: str, queues: list[str]) -> None:
    gpus = gpu_inventory()
    device = "cuda:0" if gpus else "cpu"
    Worker.objects.update_or_create(
        name=name,
        defaults={
            # The machine, for the gang scheduler: workers on one host are one machine.
            "hostname": settings.TRAINYARD_WORKER_HOSTNAME or socket.gethostname(),
            "queues": ",".join(queues),
            "device": device,
            "device_name": gpu.describe(gpus),
            "gpus": gpus,
            "devices": device_count(gpus),
            "status": Worker.Status.ONLINE,
            "started_at": timezone.now(),
            "last_heartbeat": timezone.now(),
            "current_job": None,
        },
    )


def heartbeat(name: str, queues: list[str] | None = None) -> None:
    """Stamp the row with the database's clock (`Now()`: the liveness rule reads that clock too)
    and heal its `current_job` from the running jobs that name this worker. A worker whose row
    an operator removed ("forget", while it was unreachable) registers again."""
    gpus = gpu_inventory()
    updated = Worker.objects.filter(name=name).exclude(status=Worker.Status.RETIRED).update(
        last_heartbeat=Now(), status=Worker.Status.ONLINE, gpus=gpus
    )
    if not updated and not Worker.objects.filter(name=name).update(last_heartbeat=Now(), gpus=gpus):
        if queues is not None:  # forgotten: back in the list
            register(name, queues)
    # retired: still alive, stays retired (and drained)
    scheduler.heal_current_job(name)


def runs_scheduler(queues: list[str]) -> bool:
    """Whether this worker runs the scheduler's periodic pass (silent workers, the lost-job
    watchdog, dispatch): training workers only. An ingest or infer worker never declares jobs
    lost: one that misjudges time, or a fleet of them, cannot steal healthy jobs."""
    return scheduler.train_queue() in queues


def apply_drain(name: str, queues: list[str], drained_now: bool) -> bool:
    """Make the Celery consumer follow the row: a drained worker stops consuming its queues
    (the message stays in Redis for another worker), a resumed one consumes them again.
    Returns the state now applied."""
    from webapp.celery import app

    want = scheduler.is_draining(name)
    if want != drained_now:
        for q in queues:
            if want:
                app.control.cancel_consumer(q, destination=[name])
            else:
                app.control.add_consumer(q, destination=[name])
        log.warning("worker %s %s", name, "drained: consuming nothing" if want else "resumed")
    return want


def set_offline(name: str) -> None:
    Worker.objects.filter(name=name).update(status=Worker.Status.OFFLINE, current_job=None)


class Heartbeat(threading.Thread):
    def __init__(self, name: str, queues: list[str] | None = None):
        super().__init__(name="heartbeat", daemon=True)
        self.worker_name = name
        self.queues = list(queues or [])
        self.drained = False
        self.stopped = threading.Event()
        # Per-job CPU / memory / GPU samples, at this thread's cadence (training workers only).
        self.resources = JobResources(name) if runs_scheduler(self.queues) else None

    def run(self) -> None:
        try:
            self.drained = apply_drain(self.worker_name, self.queues, self.drained)  # drained before a restart
        except Exception:  # noqa: BLE001
            log.exception("drain check failed")
        while not self.stopped.wait(settings.TRAINYARD_HEARTBEAT_SECONDS):
            try:
                close_old_connections()
                heartbeat(self.worker_name, self.queues)
                if self.resources is not None:
                    self.resources.beat()
                self.drained = apply_drain(self.worker_name, self.queues, self.drained)
                if runs_scheduler(self.queues):
                    # The training workers watch for workers and jobs whose worker died (F7), on
                    # the database's clock; each job moves once.
                    scheduler.mark_silent_workers_offline()
                    for job_id in lifecycle.requeue_lost_jobs():
                        log.warning("requeued lost job %s", job_id)
                    # The periodic dispatcher pass: frees slots of vanished workers, releases queued jobs.
                    scheduler.dispatch()
                    # The sweeps' periodic advance: catches up on anything a job's hook missed.
                    sweeps.advance_all()
            except Exception:  # noqa: BLE001 - a missed beat is not fatal
                log.exception("heartbeat failed")
        connection.close()
