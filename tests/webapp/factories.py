"""Rows in the states the web tests need (no worker process involved)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.utils import timezone

from webapp.cluster.models import Worker
from webapp.datasets.models import Dataset
from webapp.jobs.events import append_events
from webapp.jobs.lifecycle import file_sha256
from webapp.jobs.models import Artifact, Job


def ready_dataset(owner, name="iris-like") -> Dataset:
    ds = Dataset.objects.create(
        owner=owner, name=name, original_filename=f"{name}.csv", size_bytes=100, status=Dataset.Status.READY,
        info={"kind": "tabular", "task": "classification", "num_rows": 10, "num_columns": 3, "num_classes": 2,
              "num_train": 8, "num_val": 2, "classes": ["a", "b"], "class_counts": {"a": 5, "b": 5},
              "input_shape": [2], "num_outputs": 2, "label_column": "label",
              "preview": {"header": ["x", "y", "label"], "rows": [["1", "2", "a"]]}},
    )
    ds.directory.mkdir(parents=True, exist_ok=True)
    np.save(ds.directory / "X_train.npy", np.zeros((8, 2), dtype=np.float32))
    return ds


def finished_job(owner, dataset=None) -> Job:
    dataset = dataset or ready_dataset(owner)
    job = Job.objects.create(owner=owner, dataset=dataset, name="done", architecture="mlp",
                             model_config={"hidden_sizes": [4]}, train_config={"epochs": 1},
                             status=Job.Status.SUCCEEDED)
    art = job.directory / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    (art / "config.json").write_text('{"architecture": "mlp"}')
    Artifact.objects.create(job=job, name="config.json", size_bytes=23, sha256=file_sha256(art / "config.json"))
    append_events(job.pk, [("status", {"status": "succeeded"}), ("metric", {"split": "val", "step": 1,
                                                                          "values": {"loss": 0.5}})])
    return job


def running_job(owner, dataset=None) -> Job:
    dataset = dataset or ready_dataset(owner)
    return Job.objects.create(owner=owner, dataset=dataset, name="running", architecture="mlp",
                              status=Job.Status.RUNNING, train_config={"epochs": 5})


def api_token(user, name: str = "tests") -> str:
    """A new API token's key for `user`, made the way the profile page makes one."""
    from webapp.accounts.tokens import create_token

    return create_token(user, name, "never")[1]


def worker(name="w@h", *, queues="train", gpus=(), draining=False, heartbeat_age=0.0, status=None):
    """A worker row whose last heartbeat was `heartbeat_age` seconds ago (0: alive now)."""
    return Worker.objects.create(
        name=name, hostname=name.partition("@")[2] or "h", queues=queues, device="cuda:0" if gpus else "cpu",
        gpus=list(gpus), draining=draining, status=status or Worker.Status.ONLINE,
        last_heartbeat=timezone.now() - timedelta(seconds=heartbeat_age))


def dispatch_in_parallel(threads: int = 8, passes: int = 3) -> None:
    """`threads` threads, released together, each running `passes` dispatch passes on its own
    connection; raises with every error any of them met."""
    import threading

    from django.db import connection

    from webapp.jobs.scheduler import dispatch

    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def run():
        try:
            start.wait()
            for _ in range(passes):
                dispatch()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert not errors, errors
