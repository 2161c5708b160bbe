"""Celery tasks: thin adapters between job rows and the training / ingest code."""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import time
import traceback
from pathlib import Path

from django.conf import settings

from webapp.accounts import storage
from webapp.celery import INGEST_TASK, TRAIN_NODE_TASK, TRAIN_TASK, app
from webapp.datasets import services as dataset_services
from webapp.datasets.models import Dataset
from models_zoo.contracts import disk_full_message, is_disk_full, what_was_written
from webapp.jobs import lifecycle
from webapp.monitoring import recorder
from workers.adapters.fence import fenced_move as _fenced_move
from workers.adapters.logcapture import captured_output

log = logging.getLogger(__name__)


@contextlib.contextmanager
def requeue_on_sigterm(reporter):
    """While the job runs, SIGTERM in this (pool) process means "stop at the next step and
    requeue" instead of billiard's exit mid-step: systemd's default KillMode and Ctrl-C of
    runstack signal every process of the worker, not only the main one (worker.py handles
    that one). A second SIGTERM gets the previous handler."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, previous)
        reporter.request_requeue()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a threads pool): the main-process path still works
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.task(name=TRAIN_TASK, bind=True)
def train_job(self, job_id: str) -> str:
    """Run one job: the web tier is crossed twice, start_run and end_run, besides the Reporter."""
    worker = self.request.hostname or "worker"
    # Import torch before the claim: from the claim on, the job's lease runs, and the first
    # import of torch can take longer than a short lease on a busy machine.
    from workers.adapters.reporter import Reporter
    from workers.training import TrainSpec, run  # torch is imported in the worker only
    from workers.training.artifacts import Fenced, fenced_by

    start = lifecycle.start_run(job_id, worker)
    if isinstance(start, lifecycle.Skipped):
        return start.reason  # drained, does not fit, or not claimed (cancelled, finished, elsewhere)
    devices, nodes = int(start.train_config.get("gpus", 1)), int(start.train_config.get("nodes", 1))
    if devices > 1 or nodes > 1:  # torchrun's ranks (workers/adapters/ddp.py); this worker leads a multi-node gang
        from workers.adapters.ddp import run_gang

        return run_gang(start, devices)
    reporter = Reporter(start.job_id, token=start.token).start()
    status, error, result = None, "", None  # status None: interrupted, this process is exiting
    refused = False  # a checkpoint or artifact of this run was refused by the fence
    try:
        start.check()  # e.g. the job's dataset was deleted: a failed job with the reason
        if start.is_hf:  # Hugging Face fine-tuning (transformers.Trainer)
            from workers.hf import run
        spec = TrainSpec(start.architecture, start.model_config, start.train_config,
                         dataset_dir=start.dataset_dir, output_dir=start.output_dir, extra=start.extra,
                         cache_memory_bytes=settings.TRAINYARD_CACHE_MEMORY_MB * 2**20 or None)
        with captured_output(lambda data: reporter.emit("log", data)), requeue_on_sigterm(reporter), \
                fenced_by(str(start.token), lambda moves: _fenced_move(start, moves)):
            result = run(spec, [reporter], reporter.control)
        status = result.status
    except Fenced:
        refused = True
    except Exception as exc:  # noqa: BLE001 - any failure becomes the job's readable error
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        if is_disk_full(exc):
            what = what_was_written(exc)
            # The checkpointer says which file and which earlier checkpoint is intact: keep that.
            error = disk_full_message(worker, what) + (f" ({exc})" if what == "a checkpoint" else "")
        reporter.emit("log", {"level": "error", "text": traceback.format_exc()[-5000:]})
    finally:
        reporter.close()
        outcome = _end(start, reporter, status, error, result, fenced=refused or reporter.fenced)
    return outcome


@app.task(name=TRAIN_NODE_TASK, bind=True)
def train_node(self, job_id: str, node_rank: int, gang: str) -> str:
    """Machine `node_rank` (> 0) of a multi-node job's gang: wait for the leader's claim and
    rendezvous endpoint (lifecycle.join_gang), then run this machine's ranks in it
    (workers/adapters/ddp.py follow_gang). The leader records the job's end."""
    worker = self.request.hostname or "worker"
    start = lifecycle.join_gang(job_id, worker, int(node_rank), gang)
    if isinstance(start, lifecycle.Skipped):
        return start.reason  # requeued, handed to another gang, cancelled, or the leader never came
    from workers.adapters.ddp import follow_gang

    return follow_gang(start)


def _end(start, reporter, status, error, result, *, fenced: bool) -> str | None:
    if fenced:
        # Another run owns the job now (this one was paused past its lease): record nothing,
        # only free this worker's slot; the live run's files and events stay as they are.
        log.warning("job %s: the run with owner token %s lost the job; its output is discarded",
                    start.job_id, start.token)
        lifecycle.end_run(start, None)
        return "fenced"
    # Stopped for this worker's shutdown (not by a user): the job goes back to the queue.
    requeue = reporter.control.stop_reason == "requeue"
    return lifecycle.end_run(start, status, error=error, metrics=result.metrics if result else None,
                             artifacts=result.artifacts if result else [], requeue=requeue,
                             test_metrics=getattr(result, "test_metrics", None),
                             warnings=getattr(result, "warnings", None))


@app.task(name=INGEST_TASK)
def ingest_dataset(dataset_id: str) -> str:
    from workers.datasets import IngestError, ingest

    ds = Dataset.objects.filter(pk=dataset_id, status=Dataset.Status.INGESTING).first()
    if ds is None:
        return "gone"
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if total and time.monotonic() - last[0] > 0.5:
            last[0] = time.monotonic()
            dataset_services.set_progress(ds.pk, done / total)

    started = time.monotonic()

    def took(outcome: str) -> None:  # the ingest duration metric
        recorder.observe(recorder.INGEST, time.monotonic() - started, kind=ds.kind, outcome=outcome)

    try:
        budget = storage.remaining_bytes(ds.owner)  # the upload itself is counted already
        info = ingest(ds.kind, ds.upload_path, ds.directory, ds.options or {}, progress, max_cache_bytes=budget,
                      processes=settings.TRAINYARD_INGEST_PROCESSES or None)
        cache = sum(p.stat().st_size for p in ds.directory.rglob("*") if p.is_file())
        if cache > budget:  # kinds whose cache size is only known once written
            raise IngestError(f"its cache takes {cache / 2**20:.1f} MB, more than the {budget / 2**20:.1f} MB "
                              "left in your storage quota; free some space and upload it again")
    except IngestError as exc:
        # A rejected file leaves nothing: the row and every file go, the owner keeps the reason.
        dataset_services.fail_ingest(ds, f"{ds.original_filename}: {exc}")
        took("refused")
        return "failed"
    except Exception as exc:
        took("error")
        if is_disk_full(exc):
            dataset_services.fail_ingest(ds, f"{ds.original_filename}: " + disk_full_message(
                socket.gethostname(), "the dataset's cache", then="upload it again"))
        else:
            dataset_services.fail_ingest(ds, f"{ds.original_filename}: internal error while reading the file ({exc})")
        raise
    if not Dataset.objects.filter(pk=ds.pk).exists():  # deleted while it was ingesting
        dataset_services.remove_files(dataset_services.files_of(ds))
        return "gone"
    # Keep the original next to its cache; training never reads it.
    shutil.move(ds.upload_path, ds.directory / ("source" + Path(ds.original_filename).suffix.lower()))
    size = sum(p.stat().st_size for p in ds.directory.rglob("*") if p.is_file())
    dataset_services.mark_ready(ds.pk, info, size)
    took("ready")
    return "ready"
