"""`manage.py runweb` (the web service of docs/deploy/: compose and systemd): the process becomes uvicorn
with webapp/server.py's command line, answers, and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest
import requests
from django.core.management import call_command

from tests.stack import ROOT, free_port, wait_for
from webapp.server import server_argv


def test_runweb_execs_the_shared_server_command_line(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execv", lambda path, argv: calls.append((path, argv)))
    call_command("runweb", host="0.0.0.0", port=8123)
    assert calls == [(sys.executable, server_argv("0.0.0.0", 8123, python=sys.executable))]

    calls.clear()
    monkeypatch.setenv("TRAINYARD_HOST", "10.1.2.3")
    monkeypatch.setenv("TRAINYARD_PORT", "9001")
    call_command("runweb")  # the defaults come from the environment (the systemd unit's case)
    assert calls[0][1] == server_argv("10.1.2.3", 9001, python=sys.executable)


@pytest.mark.stack
def test_runweb_serves_and_stops_on_sigterm(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "TRAINYARD_DATA_DIR": str(tmp_path / "data"), "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                   check=True, timeout=300)
    log = open(tmp_path / "runweb.log", "w+")
    proc = subprocess.Popen([sys.executable, "manage.py", "runweb", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=2).status_code == 200,
                 90, "runweb")
        # The same pid is uvicorn now (exec): the service manager's signals reach it directly.
        cmdline = psutil.Process(proc.pid).cmdline()
        assert cmdline[1:4] == ["-m", "uvicorn", "webapp.asgi:application"], cmdline
        assert "--h11-max-incomplete-event-size" in cmdline
        # A graceful shutdown; uvicorn then re-raises the signal (systemd counts SIGTERM as clean).
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) in (0, -signal.SIGTERM)
        assert "Finished server process" in (tmp_path / "runweb.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
