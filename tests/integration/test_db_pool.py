"""A burst of page loads is served within a bounded number of database connections: the web
process takes its PostgreSQL connections from a pool (webapp/settings.py, TRAINYARD_WEB_PROCESS;
`DB_POOL_MAX_SIZE`), so a crowd of viewers cannot push PostgreSQL past its `max_connections`
(100 by default), where it refuses every further client. On SQLite the burst must pass too."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

pytestmark = [pytest.mark.stack, pytest.mark.postgres]

BURST = 150
POOL = 4  # small, so that the bound is visible with a burst this machine can make


@pytest.fixture
def pooled_stack():
    from tests.stack import running_stack

    with running_stack(env={"DB_POOL_MAX_SIZE": str(POOL)}) as s:
        yield s


def _web_connections(stack) -> int:
    import psycopg

    with psycopg.connect(stack.pg_admin_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = "
                            "'trainyard-web'", (stack.pg_name,)).fetchone()[0]


def test_a_burst_of_concurrent_requests_is_served_within_the_pool(pooled_stack):
    stack = pooled_stack
    token = stack.api("alice").headers["Authorization"]
    postgres = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
    peak, done = [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _web_connections(stack))
            time.sleep(0.02)

    def get(_):
        with requests.Session() as s:
            s.headers["Authorization"] = token
            r = s.get(stack.url("/api/jobs/"), timeout=300)
            return r.status_code, r.text[:200]

    watcher = threading.Thread(target=watch, daemon=True) if postgres else None
    if watcher:
        watcher.start()
    try:
        with ThreadPoolExecutor(BURST) as pool:
            results = list(pool.map(get, range(BURST)))
    finally:
        done.set()
        if watcher:
            watcher.join()
    failed = [r for r in results if r[0] != 200]
    assert not failed, f"{len(failed)} of {BURST} failed, e.g. {failed[0]}"
    if postgres:
        assert 1 <= peak[0] <= POOL, f"the web server held {peak[0]} connections at once (pool of {POOL})"
