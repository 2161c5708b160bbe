"""The Celery app shared by the web tier (which only sends tasks by name) and the workers.

Importing this module never imports torch or the training code.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("trainyard")
app.config_from_object("django.conf:settings", namespace="CELERY")

TRAIN_TASK = "trainyard.train_job"
# One other machine of a multi-node job (its node rank > 0): joins the leader's rendezvous.
TRAIN_NODE_TASK = "trainyard.train_node"
INGEST_TASK = "trainyard.ingest_dataset"
MODELZIP_TASK = "trainyard.extract_model_zip"  # an uploaded save_pretrained ZIP, unpacked beside the datasets
# Short tasks on the `infer` queue (their own worker, so a long training run never delays them).
PREDICT_TASK = "trainyard.predict"
ONNX_TASK = "trainyard.export_onnx"
BATCH_PREDICT_TASK = "trainyard.predict_batch"  # try many: a file of inputs -> a CSV of predictions
NOTIFY_TASK = "trainyard.notify_job"
MLFLOW_EXPORT_TASK = "trainyard.export_mlflow"  # on `notify` too: outbound network work


def send(task_name: str, *args, queue: str | None = None) -> None:
    """Queue a task by name with JSON arguments (ids, never objects); `queue` overrides the
    task's route (a training job goes to the queue of the worker the dispatcher chose)."""
    if queue:
        app.send_task(task_name, args=list(args), queue=queue)
    else:
        app.send_task(task_name, args=list(args))
