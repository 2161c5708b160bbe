"""Celery worker entry point: `celery -A workers.adapters.worker worker -Q train,ingest,infer --concurrency 1`.

Loads Django, registers the tasks, and registers the worker process with a heartbeat.
"""

from __future__ import annotations

import django
from celery.signals import (
    celeryd_after_setup,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from webapp.celery import app
from webapp.datadirs import restrict_umask

restrict_umask()  # caches, checkpoints, artifacts and models: 0600 / 0700
django.setup()

from webapp.jobs.events import use_persistent_loop  # noqa: E402
from workers.adapters import export_tasks, hub_tasks, infer_tasks, registry, tasks  # noqa: E402,F401 - registers the tasks

# Events and answers go out through one long-lived loop per process (reused Redis connections).
use_persistent_loop()

_heartbeat: registry.Heartbeat | None = None


@worker_process_init.connect
def _tune_cpu(**kwargs):
    """Each pool process sets torch's CPU settings before its first tensor operation (an ingest
    or a training job): flush-to-zero is a per-thread setting, and only the threads started
    after it (torch's intra-op pool) inherit it (workers/training/loop.py: tune_cpu)."""
    from workers.training.loop import tune_cpu

    tune_cpu()


@celeryd_after_setup.connect
def _own_queue(sender, instance, **kwargs):
    """A training worker also consumes a queue of its own, where the dispatcher sends the jobs
    it chose this worker for (GPU requirements, one job per GPU)."""
    from webapp.jobs.scheduler import own_queue, train_queue

    queues = instance.app.amqp.queues
    if train_queue() in queues.consume_from:
        queues.select_add(own_queue(sender))


@worker_ready.connect
def _on_ready(sender, **kwargs):
    global _heartbeat
    name = sender.hostname
    queues = [q.name for q in sender.app.amqp.queues.consume_from.values()]
    registry.register(name, queues)
    _heartbeat = registry.Heartbeat(name, queues)
    _heartbeat.start()


@worker_shutting_down.connect
def _on_shutting_down(sender, sig, how, exitcode, **kwargs):
    """SIGTERM (warm shutdown, main process): take no more jobs; the running job stops at its
    next step and goes back to the queue, to resume from its checkpoint on another worker (F8)."""
    if _heartbeat is None:
        return
    _heartbeat.stopped.set()
    registry.set_offline(_heartbeat.worker_name)  # the dispatcher sends nothing more here
    from webapp.jobs.lifecycle import request_requeue_of_running

    request_requeue_of_running(_heartbeat.worker_name)


@worker_shutdown.connect
def _on_shutdown(sender, **kwargs):
    if _heartbeat is not None:
        _heartbeat.stopped.set()
        registry.set_offline(_heartbeat.worker_name)


__all__ = ["app"]
