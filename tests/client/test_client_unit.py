"""The client without a server: the job-file check against a real /api/architectures/ answer,
the 0600 config under XDG_CONFIG_HOME, Retry-After on 429, and the CLI's --json errors."""

from __future__ import annotations

import json
import stat
import tarfile

import httpx
import pytest
from django.test import Client as DjangoClient
from typer.testing import CliRunner

from trainyard_client import ApiError, Client, SpecError, config
from trainyard_client.cli import app
from trainyard_client.jobspec import check_job


@pytest.fixture
def catalogue(alice):
    """What the server really answers (the same description the form uses)."""
    c = DjangoClient()
    c.force_login(alice)
    return c.get("/api/architectures/").json()


def test_valid_job_passes(catalogue):
    spec = {"dataset": "d", "architecture": "mlp", "model_config": {"hidden_sizes": [32, 16], "dropout": 0.1},
            "train_config": {"epochs": 3, "learning_rate": 0.01, "optimizer": "adam"}}
    assert check_job(spec, catalogue, dataset_kind="tabular") == spec


@pytest.mark.parametrize("spec, field, words", [
    ({"architecture": "mlp", "dataset": "d", "train_config": {"epoch": 3}}, "train_config.epoch", "unknown setting"),
    ({"architecture": "mlp", "dataset": "d", "train_config": {"epochs": 0}}, "train_config.epochs", "at least 1"),
    ({"architecture": "mlp", "dataset": "d", "train_config": {"epochs": 2.5}}, "train_config.epochs", "whole"),
    ({"architecture": "mlp", "dataset": "d", "model_config": {"dropout": 0.95}}, "model_config.dropout", "at most"),
    ({"architecture": "mlp", "dataset": "d", "model_config": {"activation": "swish"}}, "model_config.activation",
     "one of"),
    ({"architecture": "mlp", "dataset": "d", "model_config": {"hidden_sizes": "64,x"}}, "model_config.hidden_sizes",
     "whole numbers"),
    ({"architecture": "gru", "dataset": "d"}, "architecture", "mlp"),
    ({"architecture": "mlp"}, "dataset", "required"),
    ({"architecture": "mlp", "dataset": "d", "epochs": 3}, "epochs", "unknown key"),
])
def test_bad_job_files_name_the_field(catalogue, spec, field, words):
    with pytest.raises(SpecError) as exc:
        check_job(spec, catalogue)
    assert words in exc.value.errors[field]


def test_architecture_must_fit_the_dataset_kind(catalogue):
    with pytest.raises(SpecError) as exc:
        check_job({"architecture": "cnn", "dataset": "d"}, catalogue, dataset_kind="tabular")
    assert "tabular" in exc.value.errors["architecture"]


def test_config_is_private_and_under_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("os.umask", lambda *_: 0)  # noqa: ARG005 - not relied upon: the file mode is set
    path = config.save("http://example.test/", "secret-key")
    assert path == tmp_path / "xdg" / "trainyard" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.load() == {"url": "http://example.test", "token": "secret-key"}
    c = Client()
    assert (c.url, c.token) == ("http://example.test", "secret-key")


def test_retry_after_is_honoured(monkeypatch):
    calls, slept = [], []
    monkeypatch.setattr("time.sleep", slept.append)

    def handler(request):
        calls.append(request)
        if len(calls) < 3:
            return httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "slow down"})
        return httpx.Response(200, json={"jobs": []})

    c = Client("http://x.test", "k", transport=httpx.MockTransport(handler))
    assert c.jobs() == [] and slept == [2.0, 2.0] and len(calls) == 3
    assert calls[0].headers["Authorization"] == "Token k"


def test_429_past_the_retries_is_reported(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    c = Client("http://x.test", "k", retries=1, transport=httpx.MockTransport(
        lambda r: httpx.Response(429, headers={"Retry-After": "1"}, json={"error": "too many jobs"})))
    with pytest.raises(ApiError) as exc:
        c.jobs()
    assert exc.value.status == 429 and "too many jobs" in str(exc.value)


def test_cli_json_error_without_login(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("TRAINYARD_URL", raising=False)
    monkeypatch.delenv("TRAINYARD_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["jobs", "list", "--json"])
    assert result.exit_code == 2
    assert "trainyard login" in json.loads(result.stdout)["error"]


def _tensorboard_tar() -> bytes:
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"event bytes"
        info = tarfile.TarInfo("train/events.out.tfevents.1.host")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo("../outside")
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"x"))
    return buf.getvalue()


def test_tensorboard_export_is_unpacked_inside_the_directory(tmp_path):
    archive = _tensorboard_tar()
    c = Client("http://x.test", "k", transport=httpx.MockTransport(lambda r: httpx.Response(
        200, content=archive, headers={"Content-Type": "application/gzip"})))
    with pytest.raises(tarfile.FilterError):  # the data filter refuses the ../ member
        c.export_tensorboard("j1", tmp_path / "tb")
    assert not (tmp_path / "outside").exists()
    saved = c.export_tensorboard("j1", tmp_path / "raw", extract=False)
    assert saved.read_bytes() == archive


def test_mlflow_export_waits_for_the_outcome(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    seen = []

    def handler(request):
        seen.append((request.method, request.url.path, request.content))
        if request.method == "POST":
            return httpx.Response(202, json={"id": "e1", "status": "pending"})
        return httpx.Response(200, json={"id": "e1", "status": "done" if len(seen) > 2 else "running",
                                         "run_id": "r1"})

    c = Client("http://x.test", "k", transport=httpx.MockTransport(handler))
    export = c.export_mlflow("j1", "file:///tmp/mlruns", experiment="exp", wait=True)
    assert export["status"] == "done" and export["run_id"] == "r1"
    assert seen[0][:2] == ("POST", "/api/jobs/j1/exports/mlflow/")
    assert json.loads(seen[0][2]) == {"tracking_uri": "file:///tmp/mlruns", "register_model": False,
                                      "experiment": "exp"}
    assert [p for _, p, _ in seen[1:]] == ["/api/jobs/j1/exports/mlflow/e1/"] * 2


def test_download_checks_sha256_and_names(tmp_path):
    import hashlib

    body = b"weights"
    artifacts = [{"name": "model.safetensors", "sha256": hashlib.sha256(body).hexdigest()},
                 {"name": "config.json", "sha256": "0" * 64}]

    def handler(request):
        if request.url.path == "/api/jobs/j1/":
            return httpx.Response(200, json={"artifacts": artifacts})
        return httpx.Response(200, content=body)

    c = Client("http://x.test", "k", transport=httpx.MockTransport(handler))
    with pytest.raises(ApiError, match="config.json: the downloaded bytes do not match"):
        c.download("j1", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.safetensors"]  # no torn file
    artifacts[:] = [{"name": "../evil", "sha256": ""}]
    with pytest.raises(ApiError, match="outside"):
        c.download("j1", tmp_path / "out2")
    assert not (tmp_path / "evil").exists()
