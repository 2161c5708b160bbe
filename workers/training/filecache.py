"""Dataset caches larger than the memory a worker may give them: rows read from the cache's .npy
files on demand, and batches gathered ahead by a background thread.

`FileRows` stands in for a tensor of rows (images, token ids) or a token stream: indexing it with
an index tensor, a slice or an int reads just those rows with positioned reads (`os.preadv`)
straight into the batch's buffer — pinned memory when the batch goes to a GPU — so the file's
pages live in the kernel's page cache, shared and reclaimable, not in this process's memory
(a memory map would count every page it touched in the process's RSS). `Prefetch` runs the batch
generator in a thread a few batches ahead, so reading overlaps the training step; the copy to the
device stays on the training thread, asynchronous from pinned memory.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from pathlib import Path

import numpy as np
import torch

# The caches a run keeps in memory at most, when the worker sets no cap: half the machine's RAM.
DEFAULT_FRACTION_OF_RAM = 0.5


def default_memory_cap() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * DEFAULT_FRACTION_OF_RAM)
    except (ValueError, OSError, AttributeError):  # not POSIX
        return 4 * 2**30


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a C-order .npy file, without reading its data."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:  # 3.0 (utf-8 field names): numpy's own map gives the same facts
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            shape, fortran, dtype, offset = arr.shape, not arr.flags.c_contiguous and arr.ndim > 1, arr.dtype, arr.offset
            del arr
            if fortran or dtype.hasobject:
                raise ValueError(f"{path.name}: not a plain C-order numeric array")
            return tuple(shape), dtype, offset
        if fortran or dtype.hasobject:
            raise ValueError(f"{path.name}: not a plain C-order numeric array")
        return tuple(shape), dtype, f.tell()


class FileRows:
    """Rows of a .npy array on disk, read on demand. `long=True` gives int64 tensors (token ids)."""

    def __init__(self, path: Path, long: bool = False, pin: bool = False):
        self.path = Path(path)
        self.shape, self.dtype, self.offset = npy_header(self.path)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(math.prod(self.row_shape)) * self.dtype.itemsize
        self.long, self.pin = long, pin
        self.device = torch.device("cpu")
        self.fd = os.open(self.path, os.O_RDONLY)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    def __len__(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self):
        self.close()

    def _buffer(self, n: int, row_shape: tuple[int, ...]) -> tuple[torch.Tensor, np.ndarray]:
        t = torch.empty((n, *row_shape), dtype=_torch_dtype(self.dtype), pin_memory=self.pin)
        return t, t.numpy()

    def _read(self, into: np.ndarray, start: int, count: int) -> None:
        """`count` consecutive items (rows, or tokens of a stream) from item `start` into `into`."""
        view = memoryview(into.reshape(-1).view(np.uint8))
        want, at, done = len(view), self.offset + start * self.row_bytes, 0
        while done < want:  # a positioned read may return less than asked
            got = os.preadv(self.fd, [view[done:]], at + done)
            if got <= 0:
                raise OSError(f"{self.path.name}: the cache file ended early (truncated?)")
            done += got

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, int):
            t, arr = self._buffer(1, self.row_shape)
            self._read(arr[0], key, 1)
            return self._out(t[0])
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("FileRows slices take a step of 1")
            t, arr = self._buffer(max(0, stop - start), self.row_shape)
            if stop > start:
                self._read(arr, start, stop - start)
            return self._out(t)
        idx = key.tolist() if isinstance(key, torch.Tensor) else list(key)
        t, arr = self._buffer(len(idx), self.row_shape)
        for j, i in enumerate(idx):
            self._read(arr[j], int(i), 1)
        return self._out(t)

    def windows(self, starts: torch.Tensor, length: int) -> torch.Tensor:
        """A 1-D stream's windows [len(starts), length] (language modelling), one read each."""
        idx = starts.tolist()
        t, arr = self._buffer(len(idx), (length,))
        for j, s in enumerate(idx):
            self._read(arr[j], int(s), length)
        return self._out(t)

    def _out(self, t: torch.Tensor) -> torch.Tensor:
        return t.long() if self.long and t.dtype != torch.long else t


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


class Prefetch:
    """Iterate `source` (a generator) in a background thread, up to `depth` items ahead. Closing
    the iterator early (a cancel, early stopping) stops the thread; an error in the thread is
    raised here."""

    _END = object()

    def __init__(self, source, depth: int = 3):
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(source,), name="batch-prefetch", daemon=True)
        self.thread.start()

    def _run(self, source) -> None:
        try:
            for item in source:
                while not self.stop.is_set():
                    try:
                        self.q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self.stop.is_set():
                    return
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread
            self._put(exc)
        finally:
            close = getattr(source, "close", None)  # a generator: run its cleanup here
            if close is not None:
                close()

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self):
        try:
            while True:
                item = self.q.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.stop.set()
            self.thread.join(timeout=5)
