"""`manage.py runstack` (what `make run` starts): embedded Redis, admin account, uvicorn and
workers up; Ctrl-C stops every child process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from tests.stack import ROOT, free_port, wait_for

pytestmark = pytest.mark.stack


def test_runstack_starts_everything_and_ctrl_c_stops_it(tmp_path):
    port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "TRAINYARD_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",  # nothing answers there: embedded Redis
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
    }
    log = open(tmp_path / "runstack.log", "w+")
    proc = subprocess.Popen([sys.executable, "manage.py", "runstack", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "Trainyard is up" in (tmp_path / "runstack.log").read_text(), 120, "runstack")
        out = (tmp_path / "runstack.log").read_text()
        assert "started an embedded redis-server" in out
        password = re.search(r"Username: admin\s+Password: (\S+)", out).group(1)
        assert password != "admin" and len(password) >= 12

        # Sign in as the printed admin and see the worker registered in the admin panel.
        s = requests.Session()
        wait_for(lambda: s.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=2).ok, 60, "web server")
        r = s.post(f"http://127.0.0.1:{port}/accounts/login/", data={
            "username": "admin", "password": password, "csrfmiddlewaretoken": s.cookies["csrftoken"]},
            headers={"Referer": f"http://127.0.0.1:{port}/accounts/login/"})
        assert r.ok and "/jobs/" in r.url, (password, r.text[-1500:])

        def workers_registered():
            page = s.get(f"http://127.0.0.1:{port}/admin/cluster/worker/").text
            return "cpu@" in page and "ingest@" in page

        wait_for(workers_registered, 60, "worker registration")
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 4  # redis, web server, training worker, ingest worker (+ pool processes)

        # Ctrl-C reaches the whole foreground process group, as in a terminal.
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in psutil.Process().children(recursive=True):
            if p.pid != os.getpid() and "runstack" in " ".join(p.cmdline() or []):
                p.kill()
        time.sleep(0.1)
