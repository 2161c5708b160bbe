"""Push one job to an MLflow tracking store: a run with the job's params and tags, its metric
history (original steps and wall times, `log_batch` in batches of at most 1000 metrics), its
files as artifacts under `model/`, and optionally a registered model version of them.

Stores are built here with explicit, empty credentials: a user-chosen server must never receive
whatever MLflow credentials this machine's environment or ~/.mlflow holds. What may be
connected to, and where artifacts may be written, is the caller's decision (the connection
guard around this call and `check_artifact_location`). Every failure is a PushError with a
message written for the user; it names the step, never the network's own error.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from urllib.request import url2pathname

MAX_METRICS_PER_BATCH = 1000  # MLflow's own limit for one log_batch
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
ARTIFACT_DIR = "model"

# (split, step, wall time in seconds, {name: value}) per stored metric event
MetricEvent = tuple[str, int, float, dict[str, float]]


@dataclass(frozen=True)
class PushSpec:
    tracking_uri: str  # http(s)://… or file:///… (already checked by the caller)
    experiment: str
    run_name: str
    status: str  # the run's end state: FINISHED, FAILED or KILLED
    start_time_ms: int
    end_time_ms: int | None
    user: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    artifacts: tuple[tuple[str, str, str], ...] = ()  # (local path, name, sha256)
    model_name: str = ""  # register the artifacts as a version of this model; "" = do not
    timeout_s: float = 900.0


class PushError(Exception):
    """The push failed; the message is for the user. `run_id`: the run it had created, if any."""

    def __init__(self, message: str, run_id: str = ""):
        super().__init__(message)
        self.message, self.run_id = message, run_id


def metric_key(split: str, name: str) -> str:
    """`split/name` in the characters MLflow accepts in a key (letters, digits, `_ . - ` space and
    the one slash), neither part a path trick such as `..` (MLflow refuses keys that normalise to
    another path)."""
    def part(text: str) -> str:
        text = re.sub(r"[^\w.\- ]", "_", text) or "_"
        return "_" if set(text) <= {"."} else text

    return f"{part(split)}/{part(name)}"[:250]


def is_file_uri(uri: str) -> bool:
    return urlsplit(uri).scheme == "file"


def file_path(uri: str) -> str:
    return url2pathname(urlsplit(uri).path)


def push(spec: PushSpec, metrics: Iterable[MetricEvent],
         check_artifact_location: Callable[[str], str | None]) -> dict:
    """Create the run, log everything, end it with the job's state; the result for the export row.

    `check_artifact_location(artifact_uri)` returns why artifacts may not be written where the
    store put the new run's (None: they may); a refused location deletes the run again."""
    run = _Run(spec)
    try:
        return run.go(metrics, check_artifact_location)
    except PushError as exc:
        run.abandon()
        exc.run_id = exc.run_id or run.run_id
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow, requests and the OS raise many kinds
        run.abandon()
        raise PushError(_describe(exc, run.stage, run.file_store), run.run_id) from exc


class _Run:
    def __init__(self, spec: PushSpec):
        self.spec = spec
        self.file_store = is_file_uri(spec.tracking_uri)
        self.deadline = time.monotonic() + spec.timeout_s
        self.stage = "while connecting"
        self.run_id = ""
        self.finished = False
        self.store = None

    def go(self, metrics: Iterable[MetricEvent], check_artifact_location) -> dict:
        from mlflow.entities import RunStatus, RunTag

        spec = self.spec
        self.store = _tracking_store(spec.tracking_uri)
        self.stage = "while finding the experiment"
        experiment_id = _experiment_id(self.store, spec.experiment)
        self.stage = "while creating the run"
        run = self.store.create_run(experiment_id=experiment_id, user_id=spec.user, start_time=spec.start_time_ms,
                                    tags=[RunTag(k, v[:MAX_TAG_VALUE]) for k, v in spec.tags.items()],
                                    run_name=spec.run_name)
        self.run_id, artifact_uri = run.info.run_id, run.info.artifact_uri
        if problem := check_artifact_location(artifact_uri):
            self._delete()
            raise PushError(problem)
        counts = {"params": self._params(), "metrics": self._metrics(metrics),
                  "artifacts": self._artifacts(artifact_uri)}
        self.stage = "while ending the run"
        self.store.update_run_info(self.run_id, RunStatus.from_string(spec.status), spec.end_time_ms, spec.run_name)
        self.finished = True
        version = self._register(artifact_uri) if spec.model_name else ""
        return {"run_id": self.run_id, "experiment_id": str(experiment_id), "counts": counts,
                "run_url": "" if self.file_store else
                f"{spec.tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{self.run_id}",
                "model_version": version}

    def _check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise PushError(f"the push took longer than {self.spec.timeout_s:g} s and was stopped "
                            "(TRAINYARD_MLFLOW_TIMEOUT)")

    def _params(self) -> int:
        from mlflow.entities import Param

        self.stage = "while logging the parameters"
        items = [Param(k[:250], v[:MAX_PARAM_VALUE]) for k, v in self.spec.params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self._check_time()
            self.store.log_batch(self.run_id, metrics=[], params=items[i:i + MAX_PARAMS_PER_BATCH], tags=[])
        return len(items)

    def _metrics(self, events: Iterable[MetricEvent]) -> int:
        self.stage = "while logging the metric history"
        total = 0
        for batch in batches(_points(events), MAX_METRICS_PER_BATCH):
            self._check_time()
            self.store.log_batch(self.run_id, metrics=batch, params=[], tags=[])
            total += len(batch)
        return total

    def _artifacts(self, artifact_uri: str) -> int:
        self.stage = "while uploading the model files"
        for path, name, sha256 in self.spec.artifacts:
            self._check_time()
            if _sha256(path) != sha256:
                raise PushError(f"the stored file {name} does not match its checksum; nothing more was sent")
            self._upload(artifact_uri, path, name)
        return len(self.spec.artifacts)

    def _upload(self, artifact_uri: str, path: str, name: str) -> None:
        if self.file_store:
            from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

            LocalArtifactRepository(artifact_uri).log_artifact(path, ARTIFACT_DIR)
            return
        from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
        from mlflow.utils.rest_utils import MlflowHostCreds, augmented_raise_for_status, http_request

        # What HttpArtifactRepository.log_artifact does, with this push's empty credentials
        # instead of the environment's.
        base = MlflowArtifactsRepository.resolve_uri(artifact_uri, self.spec.tracking_uri)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        with open(path, "rb") as f:
            response = http_request(MlflowHostCreds(host=base), f"/{ARTIFACT_DIR}/{name}", "PUT", data=f,
                                    extra_headers={"Content-Type": content_type})
            augmented_raise_for_status(response)

    def _register(self, artifact_uri: str) -> str:
        from mlflow.exceptions import MlflowException

        self.stage = "while registering the model"
        registry = _registry_store(self.spec.tracking_uri)
        try:
            registry.create_registered_model(self.spec.model_name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = registry.create_model_version(self.spec.model_name, source=f"{artifact_uri}/{ARTIFACT_DIR}",
                                                run_id=self.run_id)
        return str(version.version)

    def _delete(self) -> None:
        try:
            self.store.delete_run(self.run_id)
        except Exception:  # noqa: BLE001 - the refusal is what the user needs to hear
            pass
        self.run_id = ""

    def abandon(self) -> None:
        """A run left half-logged is marked FAILED on the server (when it still answers)."""
        if not self.run_id or self.finished or self.store is None:
            return
        from mlflow.entities import RunStatus

        try:
            self.store.update_run_info(self.run_id, RunStatus.FAILED, int(time.time() * 1000), self.spec.run_name)
        except Exception:  # noqa: BLE001
            pass


def _points(events: Iterable[MetricEvent]) -> Iterator:
    from mlflow.entities import Metric

    for split, step, wall_time, values in events:
        timestamp = int(round(wall_time * 1000))
        for name, value in values.items():
            yield Metric(metric_key(split, name), value, timestamp, step)


def batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _http_defaults() -> None:
    """Bounded waits for MLflow's HTTP client (an operator's own values win): no redirects
    (as webhooks), 30 s per request, two retries."""
    for name, value in (("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"), ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
                        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"), ("MLFLOW_ALLOW_HTTP_REDIRECTS", "false")):
        os.environ.setdefault(name, value)


def _tracking_store(uri: str):
    if is_file_uri(uri):
        # MLflow 3 refuses its file store unless this is set; the caller allowed file: here.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.store.tracking.file_store import FileStore

        return FileStore(file_path(uri))
    _http_defaults()
    from mlflow.store.tracking.rest_store import RestStore
    from mlflow.utils.rest_utils import MlflowHostCreds

    creds = MlflowHostCreds(host=uri)
    return RestStore(lambda: creds)


def _registry_store(uri: str):
    if is_file_uri(uri):
        from mlflow.store.model_registry.file_store import FileStore

        return FileStore(file_path(uri))
    from mlflow.store.model_registry.rest_store import RestStore
    from mlflow.utils.rest_utils import MlflowHostCreds

    creds = MlflowHostCreds(host=uri)
    return RestStore(lambda: creds)


def _experiment_id(store, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = store.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage != "active":
            raise PushError(f"the experiment {name!r} is deleted on the tracking server; restore it or choose "
                            "another name")
        return experiment.experiment_id
    try:
        return store.create_experiment(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # another push created it meanwhile
            raise
        return store.get_experiment_by_name(name).experiment_id


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _describe(exc: BaseException, stage: str, file_store: bool) -> str:
    """What the user is told. For a server: what it answered (its error code and message, or
    the HTTP status), or only that it did not answer — never the network's own error, which
    would tell internal hosts and ports apart."""
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, RestException):
        body = exc.json if isinstance(getattr(exc, "json", None), dict) else {}
        detail = ": ".join(str(body[k]) for k in ("error_code", "message") if body.get(k)) or "no reason given"
        return f"the tracking server refused the request {stage}: {_short(detail)}"
    if file_store:
        if isinstance(exc, MlflowException):
            return f"the file store refused the request {stage}: {_short(exc.message)}"
        if isinstance(exc, OSError):
            return f"the file store could not be written {stage}: {exc.strerror or type(exc).__name__}"
        return f"the file store failed {stage} ({type(exc).__name__})"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is None and isinstance(exc, MlflowException):
        match = re.search(r"failed with error code (\d{3}) != 200", exc.message)
        status = int(match[1]) if match else None
    if status is not None:
        return f"the tracking server answered HTTP {status} {stage}"
    return f"no answer from the tracking server {stage}"
