"""The fence for a run's files (workers/training/artifacts.py fenced_by), shared by the one-process
task and rank 0 of a multi-device job."""

from __future__ import annotations

import threading

from django.db import connection

from webapp.jobs import lifecycle
from webapp.jobs.dbretry import retry_db


def fenced_move(start, moves: list[tuple[str, str]]) -> bool:
    """The fence for the run's files (workers/training/artifacts.py fenced_by): rename them only
    while this run owns the job. Called from the checkpoint writer's thread too, whose database
    connection is closed after each use (that thread ends with the write)."""
    try:
        return retry_db(lifecycle.fenced_replace, start.job_id, start.token, moves)
    finally:
        if threading.current_thread() is not threading.main_thread():
            connection.close()
