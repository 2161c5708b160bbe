"""The `trainyard` CLI and `Client` against the real stack (redis-server, Celery worker, Daphne):
login, a tus upload cut off mid-file and resumed by the CLI, a job from YAML, following its
events (also through a connection that is killed mid-run), waiting, downloading and reloading."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import httpx
import pytest
import torch
import yaml

import models_zoo.loading
from tests.stack import write_separable_csv
from trainyard_client import Client, config

pytestmark = pytest.mark.stack


def cli(stack_env: dict, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "trainyard_client.cli", *args], env=stack_env, capture_output=True,
                       text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    return r


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A fresh XDG_CONFIG_HOME, for the CLI processes and for Client objects made in the test."""
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    for name in ("TRAINYARD_URL", "TRAINYARD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return dict(os.environ, XDG_CONFIG_HOME=str(xdg))


class CutAfter(httpx.BaseTransport):
    """A transport whose connection dies after `limit` bytes of PATCH bodies: the cut PATCH
    sends part of its body, then the socket fails mid-request (as when a laptop loses Wi-Fi)."""

    def __init__(self, limit: int):
        self.inner, self.limit, self.sent = httpx.HTTPTransport(), limit, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            body = request.read()
            if self.sent + len(body) > self.limit:
                half = body[: len(body) // 2]

                def stream():
                    yield half
                    raise httpx.WriteError("connection killed mid-body")

                request = httpx.Request("PATCH", request.url, headers=request.headers, content=stream())
            self.sent += len(body)
        return self.inner.handle_request(request)


class KillableProxy:
    """A TCP proxy in front of Daphne whose open connections can be killed at once."""

    def __init__(self, port: int):
        self.upstream = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def kill_connections(self) -> int:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        return len(conns) // 2

    def close(self):
        self.server.close()
        self.kill_connections()


def test_login_stores_a_private_config_and_refuses_a_bad_token(stack, env, tmp_path):
    bad = cli(env, "login", "--url", stack.base_url, "--token", "wrong", "--json", check=False)
    assert bad.returncode == 2 and "HTTP 401" in json.loads(bad.stdout)["error"]
    assert not config.config_path().exists()
    out = json.loads(cli(env, "login", "--url", stack.base_url, "--token", stack.tokens["alice"], "--json").stdout)
    path = tmp_path / "xdg" / "trainyard" / "config.json"
    assert out["config"] == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": stack.base_url, "token": stack.tokens["alice"]}


def test_cut_upload_resumes_then_job_from_yaml_followed_waited_downloaded(stack, env, tmp_path):
    cli(env, "login", "--url", stack.base_url, "--token", stack.tokens["alice"])
    csv = write_separable_csv(tmp_path / "points.csv", n=20_000)
    chunk = 64 * 1024
    assert csv.stat().st_size > 5 * chunk

    # 1. The connection dies mid-file (inside the fourth PATCH); the client gives up (no retries).
    with Client(transport=CutAfter(3 * chunk + 1000)) as c, pytest.raises(httpx.TransportError):
        c.upload_dataset(csv, chunk_bytes=chunk, upload_retries=0)
    [url] = json.loads((tmp_path / "xdg" / "trainyard" / "uploads.json").read_text()).values()
    head = httpx.head(url, headers={"Tus-Resumable": "1.0.0", "Authorization": f"Token {stack.tokens['alice']}"})
    assert head.status_code == 200 and int(head.headers["Upload-Offset"]) == 3 * chunk  # the cut PATCH kept nothing

    # 2. The same command again resumes that upload (no second session) and creates the dataset.
    out = cli(env, "datasets", "upload", str(csv), "--kind", "tabular", "--name", "points-cli", "--label-column",
              "label", "--chunk-mb", "1", "--json")
    ds = json.loads(out.stdout)
    assert ds["name"] == "points-cli" and ds["kind"] == "tabular"
    assert httpx.head(url, headers={"Tus-Resumable": "1.0.0",
                                    "Authorization": f"Token {stack.tokens['alice']}"}).status_code == 404
    api = stack.api("alice")
    assert stack.wait_dataset(api, ds["id"])["status"] == "ready"
    stored = stack.data_dir / "datasets" / ds["id"] / "source.csv"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(csv.read_bytes()).hexdigest()
    listed = json.loads(cli(env, "datasets", "list", "--json").stdout)
    assert ds["id"] in [d["id"] for d in listed]

    # 3. A job file with a typo is refused locally, naming the field; nothing is submitted.
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"dataset": ds["id"], "architecture": "mlp", "train_config": {"epochs": 0,
                                                                                              "lr": 1}}))
    jobs_before = api.get(stack.url("/api/jobs/")).json()["jobs"]
    r = cli(env, "jobs", "submit", "-f", str(bad), "--json", check=False)
    assert r.returncode == 2
    errors = json.loads(r.stdout)["errors"]
    assert "at least 1" in errors["train_config.epochs"] and "unknown setting" in errors["train_config.lr"]
    assert api.get(stack.url("/api/jobs/")).json()["jobs"] == jobs_before

    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump({
        "dataset": "points-cli", "architecture": "mlp", "name": "from yaml",
        "model_config": {"hidden_sizes": [16]},
        "train_config": {"epochs": 4, "batch_size": 256, "learning_rate": 0.01},
    }))
    job = json.loads(cli(env, "jobs", "submit", "-f", str(job_file), "--json").stdout)
    assert job["dataset"] == ds["id"] and job["name"] == "from yaml"

    # 4. Follow to the end: every stored event exactly once, in order.
    lines = cli(env, "jobs", "follow", job["id"], "--json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    final = api.get(stack.url(f"/api/jobs/{job['id']}/")).json()
    assert final["status"] == "succeeded", stack.logs()
    assert [e["seq"] for e in events] == list(range(1, final["last_seq"] + 1))
    stored_events = api.get(stack.url(f"/api/jobs/{job['id']}/events/")).json()["events"]
    metrics = [e for e in events if e["kind"] == "metric"]
    assert metrics == [e for e in stored_events if e["kind"] == "metric"]
    assert sum(e["split"] == "val" for e in metrics) == 4
    assert events[-1]["kind"] == "status" and events[-1]["status"] == "succeeded"

    # 5. Wait (exit code by outcome), list, download and rebuild the model without the web app.
    assert cli(env, "jobs", "wait", job["id"]).returncode == 0
    assert job["id"] in [j["id"] for j in json.loads(cli(env, "jobs", "list", "--json").stdout)]
    paths = json.loads(cli(env, "jobs", "download", job["id"], str(tmp_path / "model"), "--json").stdout)
    assert {"model.safetensors", "config.json"} <= {os.path.basename(p) for p in paths}
    model, cfg = models_zoo.loading.load_model(tmp_path / "model")
    assert cfg["class_names"] == ["neg", "pos"]
    with torch.no_grad():
        assert model(torch.zeros(2, 3)).shape == (2, 2)

    # 6. A sweep from YAML: a bad space is refused naming the key; a good one runs its trials,
    #    waits to its end, shows the best, and promotes it into an ordinary job.
    sweep_file = tmp_path / "sweep.yaml"
    spec = {"dataset": "points-cli", "architecture": "mlp", "name": "lr sweep", "metric": "accuracy",
            "budget": 2, "concurrency": 1, "pruner": "none",
            "model_config": {"hidden_sizes": [16]}, "train_config": {"epochs": 2, "batch_size": 512},
            "space": {"train.learning_rat": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}}
    sweep_file.write_text(yaml.safe_dump(spec))
    r = cli(env, "sweeps", "create", "-f", str(sweep_file), "--json", check=False)
    assert r.returncode == 2 and "space.train.learning_rat" in json.loads(r.stdout)["errors"]
    spec["space"] = {"train.learning_rate": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}
    sweep_file.write_text(yaml.safe_dump(spec))
    sweep = json.loads(cli(env, "sweeps", "create", "-f", str(sweep_file), "--json").stdout)
    assert sweep["dataset"] == ds["id"] and sweep["budget"] == 2
    r = cli(env, "sweeps", "wait", sweep["id"], "--timeout", "240", "--json", check=False)
    done = json.loads(r.stdout)
    assert r.returncode == 0 and done["status"] == "succeeded", (done, stack.logs())
    assert [t["state"] for t in done["trials"]] == ["complete", "complete"] and done["best"] is not None
    assert sweep["id"] in [x["id"] for x in json.loads(cli(env, "sweeps", "list", "--json").stdout)]
    assert "best: trial #" in cli(env, "sweeps", "show", sweep["id"]).stdout
    promoted = json.loads(cli(env, "sweeps", "promote", sweep["id"], "--json").stdout)
    assert promoted["train_config"]["learning_rate"] == done["best"]["params"]["train.learning_rate"]


def test_follow_survives_a_killed_connection_and_wait_codes(stack, env, tmp_path):
    api = stack.api("bob")
    csv = write_separable_csv(tmp_path / "sep.csv", n=2000)
    with open(csv, "rb") as f:
        ds = api.post(stack.url("/api/datasets/"), files={"file": ("sep.csv", f, "text/csv")}).json()
    assert stack.wait_dataset(api, ds["id"])["status"] == "ready"
    proxy = KillableProxy(stack.http_port)
    try:
        with Client(f"http://127.0.0.1:{proxy.port}", stack.tokens["bob"]) as c:
            job = c.submit_job({"dataset": ds["id"], "architecture": "mlp",
                                "train_config": {"epochs": 12, "batch_size": 32}})
            seen, killed = [], 0
            for event in c.follow(job["id"], reconnect_delay=0.2):
                seen.append(event["seq"])
                if len(seen) in (3, 12):  # mid-run, twice: the socket dies, the client reconnects
                    killed += proxy.kill_connections()
            final = c.job(job["id"])
    finally:
        proxy.close()
    assert killed >= 2 and final["status"] == "succeeded"
    assert seen == list(range(1, final["last_seq"] + 1))  # each event once, none missing

    # jobs wait: 3 for a cancelled job; 2 and a message for a job that is not yours
    env_bob = dict(env, TRAINYARD_URL=stack.base_url, TRAINYARD_TOKEN=stack.tokens["bob"])
    queued = api.post(stack.url("/api/jobs/"), json={"dataset": ds["id"], "architecture": "mlp",
                                                      "train_config": {"epochs": 500}}).json()
    api.post(stack.url(f"/api/jobs/{queued['id']}/cancel/"))
    deadline = time.monotonic() + 60
    while api.get(stack.url(f"/api/jobs/{queued['id']}/")).json()["status"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert cli(env_bob, "jobs", "wait", queued["id"], check=False).returncode == 3
    env_alice = dict(env, TRAINYARD_URL=stack.base_url, TRAINYARD_TOKEN=stack.tokens["alice"])
    r = cli(env_alice, "jobs", "wait", queued["id"], "--json", check=False)
    assert r.returncode == 2 and "404" in json.loads(r.stdout)["error"]
    r = cli(env_alice, "jobs", "follow", queued["id"], check=False)
    assert r.returncode == 2 and "HTTP 404" in r.stderr
