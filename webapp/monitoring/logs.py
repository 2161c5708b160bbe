"""`TRAINYARD_LOG_FORMAT=json`: one JSON object per log line, for a log shipper (Loki, Elastic, …).

The standard library's logging with this small formatter (python-json-logger is not needed):
`time` (UTC, ISO 8601 with milliseconds), `level`, `logger`, `message`, `process`, `thread`, the
traceback as `exc_info` when there is one, and every `extra={...}` field the caller passed. An
extra that JSON cannot hold is written as its `str()`; Django's `request` extra becomes its method
and path (never its headers or cookies).

Imports nothing of Django: settings.LOGGING names it, and logging is configured before the apps load.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

# Attributes every LogRecord has; what else a record carries came from `extra`.
_STANDARD = set(vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None))) | {
    "message", "asctime", "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_") or key in out:
                continue
            out[key] = _plain(key, value)
        return json.dumps(out, ensure_ascii=False, default=str)


def _plain(key: str, value):
    if key == "request" and hasattr(value, "method") and hasattr(value, "path"):
        return {"method": value.method, "path": value.path}
    if isinstance(value, (str, int, float, bool, type(None), list, dict)):
        return value
    return str(value)
