"""workers.exports.mlflow_push on its own (no Django): batches of at most 1000 metrics, the run's
end state, a checksum mismatch and a refused artifact location as user messages."""

from __future__ import annotations

import hashlib

import pytest

from workers.exports import mlflow_push
from workers.exports.mlflow_push import PushError, PushSpec, push


@pytest.fixture
def store_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return (tmp_path / "store").as_uri()


def _spec(uri, tmp_path, **kw) -> PushSpec:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"w" * 100)
    return PushSpec(tracking_uri=uri, experiment="e", run_name="r", status="FAILED", start_time_ms=1000,
                    end_time_ms=2000, params={"epochs": "3"},
                    artifacts=((str(model), "model.safetensors", hashlib.sha256(b"w" * 100).hexdigest()),), **kw)


def _events(n):
    return ((("train" if i % 5 else "val"), i, 1.7e9 + i / 8, {"loss": 1 / (i + 1)}) for i in range(n))


def test_metrics_go_in_batches_of_at_most_1000(store_uri, tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.store.tracking.file_store import FileStore

    sizes = []
    original = FileStore.log_batch
    monkeypatch.setattr(FileStore, "log_batch", lambda self, run_id, metrics, params, tags: (
        sizes.append(len(metrics)), original(self, run_id, metrics, params, tags))[1])
    result = push(_spec(store_uri, tmp_path), _events(2500), lambda uri: None)
    assert [s for s in sizes if s] == [1000, 1000, 500] and result["counts"] == {"params": 1, "metrics": 2500,
                                                                                   "artifacts": 1}
    run = MlflowClient(tracking_uri=store_uri).get_run(result["run_id"])
    assert run.info.status == "FAILED" and (run.info.start_time, run.info.end_time) == (1000, 2000)
    history = MlflowClient(tracking_uri=store_uri).get_metric_history(result["run_id"], "val/loss")
    assert [(m.step, m.timestamp) for m in history][:2] == [(0, 1_700_000_000_000), (5, 1_700_000_000_625)]


def test_a_refused_artifact_location_deletes_the_run(store_uri, tmp_path):
    with pytest.raises(PushError, match="not here") as caught:
        push(_spec(store_uri, tmp_path), _events(10), lambda uri: "not here")
    assert caught.value.run_id == ""


def test_a_changed_file_is_not_sent_and_the_run_marked_failed(store_uri, tmp_path):
    from mlflow import MlflowClient

    spec = _spec(store_uri, tmp_path, model_name="m")
    (tmp_path / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(PushError, match="does not match its checksum") as caught:
        push(spec, _events(10), lambda uri: None)
    client = MlflowClient(tracking_uri=store_uri)
    run = client.get_run(caught.value.run_id)
    assert run.info.status == "FAILED" and not client.list_artifacts(run.info.run_id)
    assert client.search_registered_models() == []


def test_metric_keys_keep_to_mlflows_characters():
    assert mlflow_push.metric_key("val", "acc@top-5 (%)") == "val/acc_top-5 ___"
    assert mlflow_push.metric_key("a/b", "..") == "a_b/_"
