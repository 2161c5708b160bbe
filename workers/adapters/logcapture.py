"""Route what the training code prints or warns into the job's log events."""

from __future__ import annotations

import contextlib
import io
import warnings

MAX_LINES = 5000  # per run: a model that prints every step must not flood the database


class _LineWriter(io.TextIOBase):
    def __init__(self, emit, level: str, budget: list[int]):
        self.emit, self.level, self.budget, self.partial = emit, level, budget, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        if self.partial:
            self._line(self.partial)
            self.partial = ""

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        self.budget[0] -= 1
        if self.budget[0] >= 0:
            self.emit({"level": self.level, "text": line[:2000]})
        elif self.budget[0] == -1:
            self.emit({"level": "warning", "text": f"more than {MAX_LINES} lines of output; the rest is not kept"})


@contextlib.contextmanager
def captured_output(emit):
    """stdout, stderr and warnings of this process become log events `emit(data)` while inside."""
    budget = [MAX_LINES]
    out, err = _LineWriter(emit, "stdout", budget), _LineWriter(emit, "stderr", budget)

    def show(message, category, filename, lineno, file=None, line=None):
        err._line(f"{category.__name__}: {message} ({filename}:{lineno})")

    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("default")
        # Not the job's: the worker's own connections collected by the GC (psycopg's "connection
        # was deleted while still open" after a pool process was killed) belong in the worker log.
        warnings.filterwarnings("ignore", category=ResourceWarning)
        warnings.showwarning = show
        try:
            yield
        finally:
            out.flush()
            err.flush()
