"""A job's metric history as TensorBoard event files, in a .tar.gz (no TensorFlow needed).

Layout: `<job name>-<id>/<split>/events.out.tfevents.<time>.trainyard`, one run per split, so
`tensorboard --logdir .` draws train and validation curves of the same tag in one chart, and
several jobs unpacked side by side stay apart. Each stored metric event becomes one TensorBoard
event (its step, its original wall time, one scalar per value). TensorBoard keeps scalars as
32-bit floats; steps and wall times are exact.

Bounded memory: events are read from the database in chunks and written to one temporary file
per split, then packed into a temporary archive that the response streams; both files are
unlinked at once (nothing remains in the data dir, even if the download is cut).
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import time
from typing import IO

from django.conf import settings

from webapp.exports.history import metric_events, safe_name
from webapp.jobs.models import Job

MAX_SPLITS = 20  # more event files than this would be a malformed history, not a job
CHUNK_BYTES = 1 << 20  # the download is sent in pieces of this size
FILE_SUFFIX = "trainyard"


def folder_name(job: Job) -> str:
    return f"{safe_name(job.name, 'job', 60)}-{str(job.pk)[:8]}"


def archive_name(job: Job) -> str:
    return f"tensorboard-{folder_name(job)}.tar.gz"


def _tmp() -> IO[bytes]:
    directory = getattr(settings, "FILE_UPLOAD_TEMP_DIR", None)
    return tempfile.TemporaryFile(dir=directory if directory and os.path.isdir(directory) else None)


def build_archive(job: Job) -> tuple[IO[bytes], dict]:
    """The .tar.gz (a temporary file, at position 0) and what it holds: {split: events}."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.record_writer import RecordWriter

    upto = Job.objects.filter(pk=job.pk).values_list("last_seq", flat=True).first() or 0
    writers: dict[str, tuple[IO[bytes], RecordWriter, float]] = {}
    counts: dict[str, int] = {}
    try:
        for event in metric_events(job, upto):
            split = safe_name(event.split, "metrics", 50)
            if split not in writers:
                if len(writers) >= MAX_SPLITS:
                    continue
                f = _tmp()
                writer = RecordWriter(f)
                writer.write(Event(wall_time=event.wall_time, file_version="brain.Event:2").SerializeToString())
                writers[split], counts[split] = (f, writer, event.wall_time), 0
            summary = Summary(value=[Summary.Value(tag=name, simple_value=value)
                                     for name, value in event.values.items()])
            writers[split][1].write(Event(wall_time=event.wall_time, step=event.step,
                                          summary=summary).SerializeToString())
            counts[split] += 1
        out = _tmp()
        top = folder_name(job)
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            for split, (f, _, first_time) in sorted(writers.items()):
                f.flush()
                info = tarfile.TarInfo(f"{top}/{split}/events.out.tfevents.{int(first_time)}.{FILE_SUFFIX}")
                info.size, info.mtime, info.mode = f.tell(), int(time.time()), 0o644
                f.seek(0)
                tar.addfile(info, f)
            if not writers:  # an empty folder still opens in TensorBoard (it shows "no data")
                info = tarfile.TarInfo(top)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
                tar.addfile(info)
        out.seek(0)
        return out, counts
    finally:
        for f, _, _ in writers.values():
            f.close()
