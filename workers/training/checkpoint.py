"""Atomic, verified checkpoints: temp file + fsync + os.replace, the last two kept.

`save_async` writes in a background thread while the next epoch trains (pickling, the write
and its fsyncs: about 5 ms for a 3 MB state on this project's test VM, more on slow disks and
for big models, a blocking wait on the training thread otherwise): the training thread only
takes a CPU copy of the state; at most one write is in flight, and its error (disk full) is
raised at the next save or at `wait()`.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import torch

from workers.training.artifacts import make_dir, move_into_place, temp_path

KEEP = 2


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointError(OSError):
    """A checkpoint could not be written (disk full, quota); the message says what to do."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


def _cpu_copy(obj):
    """A snapshot of a (nested) state: tensors copied to the CPU, so training may go on."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


class Checkpointer:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def save_async(self, state: dict, epoch: int) -> None:
        """Snapshot `state` now and write it in the background (after the previous write)."""
        self.wait()
        snapshot = _cpu_copy(state)

        def write():
            try:
                self.save(snapshot, epoch)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the training thread
                self._error = exc

        self._writer = threading.Thread(target=write, name=f"checkpoint-{epoch}", daemon=True)
        self._writer.start()

    def wait(self) -> None:
        """Block until the background write is on disk; raise its error if it failed."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def paths(self) -> list[Path]:
        """Existing checkpoints, newest first."""
        if not self.dir.exists():
            return []
        return sorted(self.dir.glob("ckpt-*.pt"), reverse=True)

    def save(self, state: dict, epoch: int) -> Path:
        """Write one checkpoint under a temp name private to this attempt, then move it into place
        under the run's fence (workers/training/artifacts.py): a run that lost its job discards
        it (`Fenced`) and the live run's checkpoints stay."""
        make_dir(self.dir)
        final = self.dir / f"ckpt-{epoch:06d}.pt"
        tmp = temp_path(final)
        try:
            with open(tmp, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            move_into_place(tmp, final)
            _fsync_dir(self.dir)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)  # ENOSPC and friends: the previous checkpoint stays intact
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                kept = self.paths()
                err = CheckpointError(
                    f"disk full while writing checkpoint {final.name} ({exc.strerror or exc}); "
                    + (f"the previous checkpoint {kept[0].name} is intact" if kept else "no earlier checkpoint")
                    + "; free space in the data directory and press Retry on the job page")
                err.errno, err.strerror = exc.errno, exc.strerror  # still reads as ENOSPC to callers
                raise err from exc
            raise
        for old in self.paths()[KEEP:]:
            old.unlink(missing_ok=True)
        return final

    def load_latest(self, map_location) -> dict | None:
        """The newest checkpoint that loads; a corrupt one falls back to the older one."""
        for path in self.paths():
            try:
                # weights_only=True: never unpickle arbitrary objects from disk.
                return torch.load(path, map_location=map_location, weights_only=True)
            except Exception:  # noqa: BLE001 - a torn or corrupt file: try the previous one
                continue
        return None
