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


def test_a_killed_web_server_is_restarted_while_training_goes_on(tmp_path):
    """runstack supervises its children: SIGKILL of the web server mid-job restarts it (the log
    says so), the training worker is the same process throughout, and the job succeeds."""
    from tests.stack import write_separable_csv

    port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "TRAINYARD_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "webapp.settings",
    }
    log_path = tmp_path / "runstack.log"
    proc = subprocess.Popen([sys.executable, "manage.py", "runstack", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def children(word):
        return [p for p in psutil.Process(proc.pid).children(recursive=True)
                if word in " ".join(p.cmdline() or [])]

    try:
        wait_for(lambda: "Trainyard is up" in log_path.read_text(), 120, "runstack")
        password = re.search(r"Username: admin\s+Password: (\S+)", log_path.read_text()).group(1)
        s = requests.Session()
        wait_for(lambda: s.get(base + "/accounts/login/", timeout=2).ok, 60, "web server")
        s.post(base + "/accounts/login/", data={"username": "admin", "password": password,
                                                "csrfmiddlewaretoken": s.cookies["csrftoken"]},
               headers={"Referer": base + "/accounts/login/"})
        csrf = {"X-CSRFToken": s.cookies["csrftoken"], "Referer": base + "/"}
        path = write_separable_csv(tmp_path / "t.csv", n=2000)
        with open(path, "rb") as f:
            ds = s.post(base + "/api/datasets/", files={"file": (path.name, f)}, data={"name": "t"}, headers=csrf).json()
        wait_for(lambda: s.get(f"{base}/api/datasets/{ds['id']}/").json()["status"] == "ready", 120, "ingest")
        job = s.post(base + "/api/jobs/", json={"dataset": ds["id"], "architecture": "mlp",
                                               "train_config": {"epochs": 40, "batch_size": 16}}, headers=csrf).json()
        wait_for(lambda: s.get(f"{base}/api/jobs/{job['id']}/").json()["status"] == "running", 120, "job start")
        trainer = [p.pid for p in children("cpu@")]
        web = children("uvicorn")
        assert web and trainer
        for p in web:
            p.kill()
        wait_for(lambda: "web exited with code" in log_path.read_text(), 30, "the supervisor to notice")
        wait_for(lambda: "web restarted" in log_path.read_text(), 60, "the web server restart")
        wait_for(lambda: s.get(base + "/accounts/login/", timeout=2).ok, 60, "the web server back")
        assert "stopping" not in log_path.read_text().split("web exited", 1)[1].split("\n", 1)[0]
        assert [p.pid for p in children("cpu@")] == trainer  # training went on in the same process
        final = {}
        wait_for(lambda: final.update(s.get(f"{base}/api/jobs/{job['id']}/").json()) or
                 final.get("status") in ("succeeded", "failed", "cancelled"), 300, "the job")
        assert final["status"] == "succeeded", final
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
