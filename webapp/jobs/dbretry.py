"""Bounded retry of a worker's database writes over a dropped connection.

A PostgreSQL restart, a failover or `pg_terminate_backend` breaks the connection a worker holds;
Django then raises `OperationalError` (or `InterfaceError`: "connection already closed") on its
next query and reconnects only when that connection is closed. The end of a job (the reporter's
last flush, `lifecycle.end_run`) must not be lost to that: it closes the broken connection and
tries again with back-off, a few times, then gives up with the error (the lease watchdog is the
last resort).
"""

from __future__ import annotations

import logging
import time

from django.db import InterfaceError, OperationalError, connection

log = logging.getLogger(__name__)

ATTEMPTS = 5
FIRST_DELAY = 0.5  # seconds; doubled after each failure (0.5, 1, 2, 4: ~7.5 s in all)


def retry_db(fn, *args, attempts: int = ATTEMPTS, first_delay: float = FIRST_DELAY, **kwargs):
    """fn(*args, **kwargs), again on a fresh connection after a dropped one. Not inside an open
    transaction (its work would be half gone): there the error is raised at once."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            if i == attempts - 1 or connection.in_atomic_block:
                raise
            delay = first_delay * 2 ** i
            log.warning("database connection lost (%s); reconnecting, retry %d of %d in %.1f s",
                        str(exc).strip() or type(exc).__name__, i + 1, attempts - 1, delay)
            connection.close()  # the next query opens a new connection
            time.sleep(delay)
    raise AssertionError("unreachable")
