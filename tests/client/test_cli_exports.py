"""`trainyard jobs export tensorboard|mlflow` against the real Django app (through httpx's WSGI
transport, no server): the archive unpacks into event files TensorBoard reads, the push ends
`done` in a file store, and refusals exit 2 with the server's message."""

from __future__ import annotations

import json

import httpx
import pytest
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
from typer.testing import CliRunner

from tests.webapp.factories import api_token, finished_job
from trainyard_client import cli
from trainyard_client.client import Client
from webapp.exports.tensorboard import folder_name


@pytest.fixture
def run_cli(alice, monkeypatch, tmp_path):
    """`trainyard ...` as alice, every request answered by the Django app in this process."""
    signals.request_started.disconnect(close_old_connections)  # keep the test's transaction
    signals.request_finished.disconnect(close_old_connections)
    transport = httpx.WSGITransport(app=get_wsgi_application())
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TRAINYARD_URL", "http://testserver")
    monkeypatch.setenv("TRAINYARD_TOKEN", api_token(alice))
    monkeypatch.setattr(cli, "Client", lambda *a, **kw: Client(*a, transport=transport, **kw))
    yield lambda *args: CliRunner().invoke(cli.app, list(args))
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_export_tensorboard_unpacks_event_files(run_cli, alice, tmp_path):
    job = finished_job(alice)
    r = run_cli("jobs", "export", "tensorboard", str(job.pk), str(tmp_path / "tb"), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"path": str(tmp_path / "tb")}
    acc = EventAccumulator(str(tmp_path / "tb" / folder_name(job) / "val"), size_guidance={SCALARS: 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 0.5)]
    r = run_cli("jobs", "export-tensorboard", "00000000-0000-0000-0000-000000000000", str(tmp_path / "x"), "--json")
    assert r.exit_code == 2 and "404" in json.loads(r.stdout)["error"]


def test_export_mlflow_waits_for_the_push(run_cli, alice, tmp_path, settings, monkeypatch):
    from mlflow import MlflowClient

    from workers.adapters.export_tasks import export_mlflow

    job = finished_job(alice)
    root = tmp_path / "mlflow"
    root.mkdir()
    settings.TRAINYARD_MLFLOW_FILE_ROOT = str(root)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    # The queue is the test itself: the task runs as soon as the request commits.
    monkeypatch.setattr("webapp.exports.services.transaction.on_commit", lambda fn, *a, **kw: fn())
    monkeypatch.setattr("webapp.celery.send", lambda name, *args, **kw: export_mlflow(*args))
    monkeypatch.setattr("trainyard_client.client.time.sleep", lambda s: None)
    r = run_cli("jobs", "export", "mlflow", str(job.pk), "--tracking-uri", root.as_uri(), "--experiment", "cli",
                "--register-model", "--json")
    assert r.exit_code == 0, r.output
    export = json.loads(r.stdout)
    assert export["status"] == "done" and export["model_version"] == "1"
    run = MlflowClient(tracking_uri=root.as_uri()).get_run(export["run_id"])
    assert run.data.metrics == {"val/loss": 0.5}

    r = run_cli("jobs", "export-mlflow", str(job.pk), "--tracking-uri", "http://127.0.0.1:5000")
    assert r.exit_code == 2 and "loopback" in r.output and "TRAINYARD_MLFLOW_ALLOWLIST" in r.output
