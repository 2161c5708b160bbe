"""The MLflow push: the request is checked (URI rules, the job's state, other users get 404),
stored and queued on `notify`; the task pushes under the address rules. A file: store read
back with MlflowClient holds exactly the stored history; a fake MLflow server checks batching,
the artifact service and that no credentials of the worker's environment are sent; refused
addresses (also at connect time) fail with a message that tells nothing about the network."""

from __future__ import annotations

import ipaddress
import json

import pytest

from tests.webapp.exports.conftest import stored_points
from tests.webapp.exports.fake_mlflow import FakeMlflow
from tests.webapp.factories import running_job
from webapp.accounts import webhooks
from webapp.accounts.models import AuditEvent
from webapp.celery import MLFLOW_EXPORT_TASK
from webapp.exports.models import MlflowExport
from workers.adapters.export_tasks import export_mlflow

PUBLIC = "93.184.216.34"


@pytest.fixture
def mlflow_env(monkeypatch):
    """MLflow's own switches, set here so that they are undone after each test (the push only
    sets those that are missing)."""
    for name, value in (("MLFLOW_HTTP_REQUEST_TIMEOUT", "5"), ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
                        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0"), ("MLFLOW_ALLOW_HTTP_REDIRECTS", "false")):
        monkeypatch.setenv(name, value)


@pytest.fixture
def file_root(settings, tmp_path, monkeypatch):
    root = tmp_path / "mlflow-root"
    root.mkdir()
    settings.TRAINYARD_MLFLOW_FILE_ROOT = str(root)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses its file store without it
    return root


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Run each request's after-commit work (queueing the task) when the request ends, as a
    real transaction would (the test's own transaction never commits)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def post(on_commit):
    def post(client, job, **body):
        with on_commit():
            return client.post(f"/api/jobs/{job.pk}/exports/mlflow/", data=json.dumps(body),
                               content_type="application/json")
    return post


@pytest.fixture
def push(post, sent_tasks):
    def push(client, job, **body) -> dict:
        """Ask for the push, then run the task the request queued, as the notify worker would."""
        r = post(client, job, **body)
        assert r.status_code == 202, r.json()
        export = r.json()
        assert export["status"] == "pending"
        assert sent_tasks[-1] == (MLFLOW_EXPORT_TASK, export["id"])
        export_mlflow(export["id"])
        r = client.get(f"/api/jobs/{job.pk}/exports/mlflow/{export['id']}/")
        assert r.status_code == 200
        return r.json()
    return push


def _expected_mlflow(job) -> dict[str, list[tuple[int, int, float]]]:
    """{key: [(step, timestamp ms, value)]}: the stored history in MLflow's terms."""
    return {f"{split}/{name}": [(s, int(round(t * 1000)), v) for s, t, v in points]
            for (split, name), points in stored_points(job).items()}


def test_file_store_push_reads_back_as_the_stored_history(client_alice, job, file_root, mlflow_env, sent_tasks,
                                                          push):
    from mlflow import MlflowClient

    uri = (file_root / "alice").as_uri()
    export = push(client_alice, job, tracking_uri=uri, experiment="iris", register_model=True)
    assert export["status"] == "done", export["error"]
    assert export["counts"] == {"params": 5, "metrics": sum(len(p) for p in stored_points(job).values()),
                                "artifacts": 3}
    assert export["model_version"] == "1" and export["run_url"] == ""

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(export["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "iris"
    assert run.info.status == "FINISHED" and run.info.run_name == "iris mlp"
    assert run.info.start_time == int(job.started_at.timestamp() * 1000)
    assert run.info.end_time == int(job.finished_at.timestamp() * 1000)
    assert run.data.params == {"model.hidden_sizes": "[32, 16]", "model.dropout": "0.1", "epochs": "12",
                               "learning_rate": "0.01", "optimizer": "adam"}
    assert run.data.tags["trainyard.job_id"] == str(job.pk) and run.data.tags["mlflow.user"] == "alice"
    expected = _expected_mlflow(job)
    assert set(run.data.metrics) == set(expected)
    for key, points in expected.items():
        history = client.get_metric_history(run.info.run_id, key)
        got = sorted((m.step, m.timestamp, m.value) for m in history)
        assert got == sorted(points), key  # every point: step, original time (ms), value (exact)
    files = {f.path: f.file_size for f in client.list_artifacts(run.info.run_id, "model")}
    assert files == {f"model/{a.name}": a.size_bytes for a in job.artifacts.all()}
    assert set(files) == {"model/model.safetensors", "model/MODEL_CARD.md", "model/config.json"}
    version = client.get_model_version("iris mlp", "1")
    assert version.run_id == run.info.run_id and version.source.endswith("/artifacts/model")
    assert AuditEvent.objects.filter(action="job.export_mlflow", object_id=str(job.pk)).exists()

    # Again, into the same experiment, registering under a name of one's own.
    again = push(client_alice, job, tracking_uri=uri, experiment="iris", register_model=True,
                  model_name="iris-prod")
    assert again["status"] == "done" and again["run_id"] != export["run_id"]
    assert client.get_model_version("iris-prod", again["model_version"]).run_id == again["run_id"]
    listed = client_alice.get(f"/api/jobs/{job.pk}/exports/mlflow/").json()["exports"]
    assert [e["id"] for e in listed] == [again["id"], export["id"]]


@pytest.mark.parametrize("uri, words", [
    ("", "give the tracking URI"),
    ("ftp://mlflow.example.com", "http:// or https://"),
    ("databricks", "http:// or https://"),
    ("/srv/mlruns", "a bare path is not supported"),
    ("http://127.0.0.1:5000", "loopback"),
    ("http://10.1.2.3", "private-network"),
    ("http://169.254.169.254/latest", "link-local"),
    ("http://[::ffff:127.0.0.1]:5000", "loopback"),
    ("https://bob:secret@mlflow.example.com", "no user name or password"),
    ("https://mlflow.example.com/?x=1", "no query"),
    ("https://mlflow.exa_mple.com", "no valid host name"),
    ("https://mlflow.example.com:99999", "port"),
    ("file:///tmp/mlruns", "not enabled on this server"),
])
def test_refused_uris_change_nothing(client_alice, job, sent_tasks, uri, words, post):
    r = post(client_alice, job, tracking_uri=uri)
    assert r.status_code == 400
    assert words in r.json()["errors"]["tracking_uri"], r.json()
    assert not MlflowExport.objects.exists() and not sent_tasks
    assert not AuditEvent.objects.filter(action="job.export_mlflow").exists()


def test_file_uris_only_inside_the_root(client_alice, job, file_root, tmp_path, sent_tasks, post):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (file_root / "link").symlink_to(outside)
    (file_root / "a-file").write_text("x")
    for uri, words in [((tmp_path / "elsewhere").as_uri(), "must point inside"),
                       (f"file://{file_root}/../elsewhere", "must point inside"),
                       ((file_root / "link" / "runs").as_uri(), "must point inside"),
                       ((file_root / "a-file").as_uri(), "a file, not a folder"),
                       (f"file://otherhost{file_root}", "names a folder on this server only"),
                       ("file:relative/mlruns", "absolute path")]:
        r = post(client_alice, job, tracking_uri=uri)
        assert r.status_code == 400 and words in r.json()["errors"]["tracking_uri"], (uri, r.json())
    assert not MlflowExport.objects.exists() and not sent_tasks
    assert not any(p.name == "mlruns" for p in tmp_path.rglob("*"))


def test_other_users_get_404_and_running_jobs_409(client_alice, client_bob, job, alice, file_root, sent_tasks,
                                                  post):
    uri = file_root.as_uri()
    r = post(client_bob, job, tracking_uri=uri)
    assert r.status_code == 404
    assert client_bob.get(f"/api/jobs/{job.pk}/exports/mlflow/").status_code == 404
    assert post(client_alice, job, tracking_uri=uri, experiment="x" * 201).status_code == 400
    r = post(client_alice, job, tracking_uri=uri, register_model=True, model_name="team/model")
    assert r.status_code == 400 and "cannot contain" in r.json()["errors"]["model_name"]
    mine = post(client_alice, job, tracking_uri=uri).json()
    # bob cannot read alice's export, not even under a job of his own
    assert client_bob.get(f"/api/jobs/{job.pk}/exports/mlflow/{mine['id']}/").status_code == 404
    r = post(client_alice, running_job(alice), tracking_uri=uri)
    assert r.status_code == 409 and "has not ended" in r.json()["detail"]
    assert MlflowExport.objects.count() == 1 and len(sent_tasks) == 1


def test_the_default_model_name_is_the_jobs_made_to_fit(client_alice, job, file_root, sent_tasks, post):
    type(job).objects.filter(pk=job.pk).update(name="runs/2024: best")
    r = post(client_alice, job, tracking_uri=file_root.as_uri(), register_model=True)
    assert r.status_code == 202 and r.json()["model_name"] == "runs-2024- best"


def test_too_many_pushes_in_progress(client_alice, job, file_root, settings, sent_tasks, post):
    settings.TRAINYARD_MLFLOW_MAX_ACTIVE = 2
    assert post(client_alice, job, tracking_uri=file_root.as_uri()).status_code == 202
    assert post(client_alice, job, tracking_uri=file_root.as_uri()).status_code == 202
    r = post(client_alice, job, tracking_uri=file_root.as_uri())
    assert r.status_code == 429 and "the limit is 2" in r.json()["detail"]


def test_push_to_a_server_batches_metrics_and_sends_no_credentials(client_alice, job, settings, mlflow_env,
                                                                   sent_tasks, monkeypatch, push):
    # Credentials this machine may hold for a server of its own must not go to a user's server.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "operator-secret")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "operator")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "operator-password")
    settings.TRAINYARD_MLFLOW_ALLOWLIST = "127.0.0.1"  # the fake server is on loopback
    with FakeMlflow() as server:
        export = push(client_alice, job, tracking_uri=server.uri + "/", register_model=True)
        assert export["status"] == "done", export["error"]
        run_id = export["run_id"]
        assert export["run_url"] == f"{server.uri}/#/experiments/1/runs/{run_id}"
        assert server.experiments["1"]["name"] == "trainyard"
        assert server.runs[run_id]["info"]["status"] == "FINISHED"
        batches = [json.loads(r["body"]) for r in server.requests if r["path"].endswith("/runs/log-batch")]
        sizes = [len(b.get("metrics", [])) for b in batches if b.get("metrics")]
        assert max(sizes) == 1000 and sum(sizes) == export["counts"]["metrics"] == 3600 + 25
        got: dict = {}
        for m in server.metrics[run_id]:
            got.setdefault(m["key"], []).append((int(m["step"]), int(m["timestamp"]), m["value"]))
        assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in _expected_mlflow(job).items()}
        assert server.params[run_id]["model.hidden_sizes"] == "[32, 16]"
        assert set(server.artifacts) == {f"1/{run_id}/artifacts/model/model.safetensors",
                                         f"1/{run_id}/artifacts/model/config.json",
                                         f"1/{run_id}/artifacts/model/MODEL_CARD.md"}
        assert server.artifacts[f"1/{run_id}/artifacts/model/MODEL_CARD.md"].startswith(b"# iris mlp")
        assert server.models["iris mlp"][0]["source"] == f"mlflow-artifacts:/1/{run_id}/artifacts/model"
        for request in server.requests:
            assert "Authorization" not in request["headers"] and b"operator" not in request["body"]


def test_a_server_that_keeps_artifacts_elsewhere_gets_nothing(client_alice, job, settings, mlflow_env, sent_tasks,
                                                              push):
    settings.TRAINYARD_MLFLOW_ALLOWLIST = "127.0.0.1"
    for location, words in [("s3://bucket/{exp}", "a s3: location"), ("file:///var/trainyard/{exp}", "a file:"),
                            ("/srv/artifacts/{exp}", "a path on its own disk"),
                            ("mlflow-artifacts://other.example.com/{exp}", "a mlflow-artifacts: location")]:
        with FakeMlflow(artifact_location=location) as server:
            export = push(client_alice, job, tracking_uri=server.uri)
            assert export["status"] == "failed" and words in export["error"], (location, export["error"])
            assert "nothing was pushed" in export["error"] and export["run_id"] == ""
            (run,) = server.runs.values()
            assert run["info"]["lifecycle_stage"] == "deleted"
            assert not any(server.metrics.values()) and not server.artifacts


def test_an_address_that_changes_to_an_internal_one_is_refused_at_connect(client_alice, job, mlflow_env,
                                                                          sent_tasks, monkeypatch, push):
    answers = iter([PUBLIC])  # the check at request time sees a public address ...

    def resolve(host, port):
        return [ipaddress.ip_address(next(answers, "127.0.0.1"))]  # ... the connection an internal one

    monkeypatch.setattr(webhooks, "resolve", resolve)
    with FakeMlflow() as server:
        export = push(client_alice, job, tracking_uri=f"http://mlflow.example.com:{server.port}")
        assert export["status"] == "failed"
        assert export["error"].startswith("not sent: mlflow.example.com resolves to a loopback address; MLflow "
                                          "exports go to public tracking servers only")
        assert "127.0.0.1" not in export["error"] and not server.requests


def test_failures_tell_nothing_about_the_network(client_alice, job, settings, mlflow_env, sent_tasks, push):
    import socket

    settings.TRAINYARD_MLFLOW_ALLOWLIST = "127.0.0.1"
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    export = push(client_alice, job, tracking_uri=f"http://127.0.0.1:{closed}")
    assert export["status"] == "failed"
    assert export["error"] == "no answer from the tracking server while finding the experiment"

    with FakeMlflow() as server:
        server.answer_all = (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, None)
        export = push(client_alice, job, tracking_uri=server.uri)
        assert export["error"] == "the tracking server answered HTTP 302 while finding the experiment"
        assert len(server.requests) == 1  # the redirect was not followed
        server.answer_all = (403, {}, {"error_code": "PERMISSION_DENIED", "message": "sign in first"})
        export = push(client_alice, job, tracking_uri=server.uri)
        assert export["error"] == ("the tracking server refused the request while finding the experiment: "
                                   "PERMISSION_DENIED: sign in first")


def test_a_redelivered_push_is_not_pushed_twice(client_alice, job, file_root, mlflow_env, sent_tasks, post):
    export = post(client_alice, job, tracking_uri=file_root.as_uri()).json()
    MlflowExport.objects.filter(pk=export["id"]).update(status="running")  # its worker died mid-push
    assert export_mlflow(export["id"]) == "gone"
    row = MlflowExport.objects.get(pk=export["id"])
    assert row.status == "failed" and "interrupted" in row.error
    assert not list(file_root.iterdir())
