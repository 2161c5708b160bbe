"""Route what the training code prints or warns into the job's log events."""

from __future__ import annotations

import contextlib
import io
import re
import warnings

MAX_LINES = 5000  # per run: a model that prints every step must not flood the database
# Terminal colours and cursor moves (CSI and OSC sequences): the job page is not a terminal.
ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
# transformers' report of the weights a checkpoint did not have (a new classification head is
# expected to be missing) and of those it had but the model does not use: information, not an error.
# transformers 5 prints a LOAD REPORT table, 4.x a "Some weights ... newly initialized" paragraph.
LOAD_NOTICE = re.compile(
    r"LOAD REPORT|newly initialized|^\s*Key\s*\|\s*Status|^[-+\s]+$|^\S+\s*\|\s*(?:MISSING|UNEXPECTED|MISMATCH)"
    r"|^Notes:\s*$|^- (?:MISSING|UNEXPECTED|MISMATCH)|^Some weights of .* were not (?:initialized|used)"
    r"|You should probably TRAIN this model|^- This IS (?:NOT )?expected")


def clean_line(line: str, level: str) -> tuple[str, str]:
    """(level, text) of one captured line: escape codes removed, what a carriage return redrew
    (progress bars) as the terminal shows it, transformers' weight-loading report as info."""
    text = ANSI.sub("", line).rstrip("\r").rpartition("\r")[2]
    if level == "stderr" and LOAD_NOTICE.search(text):
        level = "info"
    return level, text


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
        level, line = clean_line(line, self.level)
        if not line.strip():
            return
        self.budget[0] -= 1
        if self.budget[0] >= 0:
            self.emit({"level": level, "text": line[:2000]})
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
