"""`Client`: the Trainyard API for scripts and notebooks; every CLI command is one method here."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from trainyard_client import config
from trainyard_client.follow import follow_events
from trainyard_client.jobspec import SpecError, check_job

TERMINAL = ("succeeded", "failed", "cancelled")
CHUNK_BYTES = 8 * 1024 * 1024  # below the server's TRAINYARD_MAX_REQUEST_MB (64 by default)
MAX_RETRY_AFTER = 120.0
TUS = {"Tus-Resumable": "1.0.0"}

Progress = Callable[[int, int], None]  # (bytes on the server, total)


class ApiError(Exception):
    """The server refused a request; `status` is the HTTP status, `body` its JSON (or text)."""

    def __init__(self, status: int, message: str, body: Any = None):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.body = status, message, body


def _message(response: httpx.Response) -> tuple[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase, response.text
    if isinstance(body, dict):
        text = body.get("error") or body.get("detail") or json.dumps(body)
        if isinstance(body.get("errors"), dict):
            text += ": " + "; ".join(f"{k}: {v}" for k, v in body["errors"].items())
        return str(text), body
    return json.dumps(body), body


def _uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class Client:
    """A signed-in connection to one server. Without `url`/`token`, the ones `trainyard login` saved.

    `transport` is handed to httpx (tests use it to cut a connection mid-upload); `retries`
    bounds how often a 429 (quota, rate limit) or 503 with Retry-After is waited out and retried.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None, retries: int = 3,
                 upload_store: config.UploadStore | None = None):
        saved = config.load() if url is None or token is None else {}
        self.url = (url or os.environ.get("TRAINYARD_URL") or saved.get("url") or "").rstrip("/")
        self.token = token or os.environ.get("TRAINYARD_TOKEN") or saved.get("token") or ""
        if not self.url or not self.token:
            raise config.ConfigError("no server configured: run `trainyard login` or pass url and token")
        self.retries = retries
        self.uploads = upload_store or config.UploadStore()
        self.http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport,
                                 headers={"Authorization": f"Token {self.token}"}, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP --------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 204), **kwargs: Any) -> httpx.Response:
        """One API call; waits out Retry-After on 429/503 (at most `retries` times), raises ApiError."""
        for attempt in range(self.retries + 1):
            response = self.http.request(method, path, **kwargs)
            delay = self._retry_after(response)
            if delay is None or attempt == self.retries:
                break
            time.sleep(delay)
        if response.status_code not in ok:
            raise ApiError(response.status_code, *_message(response))
        return response

    @staticmethod
    def _retry_after(response: httpx.Response) -> float | None:
        if response.status_code not in (429, 503):
            return None
        value = response.headers.get("Retry-After", "")
        try:
            return min(MAX_RETRY_AFTER, max(0.0, float(value)))
        except ValueError:
            return None  # no (or an HTTP-date) Retry-After: report the refusal instead of guessing

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    # -- datasets ----------------------------------------------------------------------------
    def datasets(self) -> list[dict]:
        return self.get("/api/datasets/")["datasets"]

    def dataset(self, dataset_id: str) -> dict:
        return self.get(f"/api/datasets/{dataset_id}/")

    def upload_dataset(self, path: str | os.PathLike, *, kind: str = "auto", name: str = "", description: str = "",
                       options: dict[str, Any] | None = None, chunk_bytes: int = CHUNK_BYTES,
                       progress: Progress | None = None, upload_retries: int = 5) -> dict:
        """Upload a file by tus and create the dataset from it; resumes an earlier, interrupted
        upload of the same file (same path, size and modification time) to the same server."""
        path = Path(path)
        upload_url = self.upload_file(path, chunk_bytes=chunk_bytes, progress=progress, upload_retries=upload_retries)
        session_id = upload_url.rstrip("/").rsplit("/", 1)[1]
        body = {"upload": session_id, "name": name, "description": description, "kind": kind,
                **{k: v for k, v in (options or {}).items() if v is not None}}
        try:
            dataset = self.request("POST", "/api/datasets/", json=body).json()
        finally:
            self.uploads.remove(self._fingerprint(path))  # done or refused: the session is gone either way
        return dataset

    def _fingerprint(self, path: Path) -> str:
        st = path.stat()
        return f"{self.url}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def upload_file(self, path: Path, *, chunk_bytes: int = CHUNK_BYTES, progress: Progress | None = None,
                    upload_retries: int = 5) -> str:
        """The tus upload URL of `path` once all its bytes are on the server (resumed if possible).

        A dropped connection is retried `upload_retries` times in a row (with back-off), each time
        from the offset the server reports; after that the error is raised and a later call resumes."""
        size = path.stat().st_size
        key = self._fingerprint(path)
        url, offset = self._resume(key, size)
        if url is None:
            meta = f"filename {base64.b64encode(path.name.encode()).decode()}"
            r = self.request("POST", "/api/uploads/tus/", ok=(201,), headers={
                **TUS, "Upload-Length": str(size), "Upload-Metadata": meta})
            url, offset = r.headers["Location"], 0
            self.uploads.put(key, url)
        failures = 0
        with open(path, "rb") as f:
            while offset < size:
                if progress:
                    progress(offset, size)
                f.seek(offset)
                chunk = f.read(chunk_bytes)
                try:
                    r = self.request("PATCH", url, ok=(204, 409), content=chunk, headers={
                        **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
                except httpx.TransportError:
                    failures += 1
                    if failures > upload_retries:
                        raise  # the store keeps the URL: the next call resumes from the server's offset
                    time.sleep(min(30.0, 2.0 ** failures))
                    url, offset = self._resume(key, size)
                    if url is None:
                        raise
                    continue
                failures = 0
                offset = int(r.headers["Upload-Offset"])  # 409: the server says where it is
        if progress:
            progress(size, size)
        return url

    def _resume(self, key: str, size: int) -> tuple[str | None, int]:
        url = self.uploads.get(key)
        if url is None:
            return None, 0
        r = self.http.head(url, headers=TUS)
        if r.status_code != 200 or r.headers.get("Upload-Length") != str(size):
            self.uploads.remove(key)  # finished, expired or removed on the server: start again
            return None, 0
        return url, int(r.headers["Upload-Offset"])

    # -- jobs --------------------------------------------------------------------------------
    def architectures(self) -> dict:
        return self.get("/api/architectures/")

    def check_job(self, spec: Any) -> dict:
        """The POST body for `spec` (a job file's contents), checked against the server's schema;
        a dataset given by name is resolved to its id. Raises SpecError naming each bad field."""
        if isinstance(spec, dict) and spec.get("dataset"):
            spec = dict(spec)
            dataset = self._find_dataset(str(spec["dataset"]))
            spec["dataset"] = dataset["id"]
            return check_job(spec, self.architectures(), dataset_kind=dataset.get("kind"))
        return check_job(spec, self.architectures())

    def _find_dataset(self, ref: str) -> dict:
        found = [d for d in self.datasets() if (d["id"] == ref if _uuid(ref) else d["name"] == ref)]
        if len(found) != 1:
            raise SpecError({"dataset": f"no dataset {ref!r}" if not found else
                             f"{len(found)} datasets are named {ref!r}: give the id"})
        return found[0]

    def submit_job(self, spec: dict) -> dict:
        return self.request("POST", "/api/jobs/", json=self.check_job(spec)).json()

    def jobs(self) -> list[dict]:
        return self.get("/api/jobs/")["jobs"]

    def job(self, job_id: str) -> dict:
        return self.get(f"/api/jobs/{job_id}/")

    def cancel_job(self, job_id: str) -> dict:
        return self.request("POST", f"/api/jobs/{job_id}/cancel/").json()

    # -- sweeps: N ordinary jobs whose settings Optuna picks (server side) ----------------------
    def sweeps(self) -> list[dict]:
        return self.get("/api/sweeps/")["sweeps"]

    def sweep(self, sweep_id: str) -> dict:
        return self.get(f"/api/sweeps/{sweep_id}/")

    def create_sweep(self, spec: dict) -> dict:
        """Start a sweep from `spec` (a sweep file's contents: dataset by id or name, architecture,
        space, metric, budget, concurrency, ...); the server checks the space against the settings'
        schema and names each refused field."""
        if not isinstance(spec, dict):
            raise SpecError({"file": "a sweep file is a mapping (dataset, architecture, space, metric, ...)"})
        body = dict(spec)
        if body.get("dataset"):
            body["dataset"] = self._find_dataset(str(body["dataset"]))["id"]
        return self.request("POST", "/api/sweeps/", json=body).json()

    def cancel_sweep(self, sweep_id: str) -> dict:
        return self.request("POST", f"/api/sweeps/{sweep_id}/cancel/").json()

    def promote_sweep(self, sweep_id: str) -> dict:
        """A new ordinary job with the best complete trial's settings."""
        return self.request("POST", f"/api/sweeps/{sweep_id}/promote/").json()

    def wait_sweep(self, sweep_id: str, *, timeout: float | None = None, interval: float = 2.0) -> dict:
        """The sweep once it has ended; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sweep = self.sweep(sweep_id)
            if sweep["status"] in TERMINAL:
                return sweep
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"sweep {sweep_id} is still {sweep['status']} after {timeout} s")
            time.sleep(interval)

    def wait(self, job_id: str, *, timeout: float | None = None, interval: float = 1.0) -> dict:
        """The job once it has finished; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout} s")
            time.sleep(interval)

    def follow(self, job_id: str, *, after: int = 0, reconnect_delay: float = 1.0,
               max_reconnects: int = 30) -> Iterator[dict]:
        """Every event of the job numbered above `after`, each exactly once and in order, live over
        the websocket; on a drop it reconnects and asks for `{"after": last}`. Ends after the
        job's final status event. An unknown job or a refused token raises ApiError at once."""
        self.job(job_id)  # the API says why (404, 401) where a refused handshake would only say 403
        return follow_events(self._socket_url(job_id), self.token, self.url, after=after,
                             reconnect_delay=reconnect_delay, max_reconnects=max_reconnects)

    def _socket_url(self, job_id: str) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}/ws/jobs/{job_id}/"

    def download(self, job_id: str, directory: str | os.PathLike) -> list[Path]:
        """Every artifact of the job into `directory`, each checked against its stored sha256."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        out = []
        for artifact in self.job(job_id)["artifacts"]:
            name = artifact["name"]
            if Path(name).name != name or name in ("", ".", "..") or "\\" in name:
                raise ApiError(200, f"refusing the artifact name {name!r}: it would write outside {directory}")
            target, tmp = directory / name, directory / f".{name}.part"
            digest = hashlib.sha256()
            with self.http.stream("GET", f"/api/jobs/{job_id}/artifacts/{name}") as r:
                if r.status_code != 200:
                    raise ApiError(r.status_code, f"download of {name} failed")
                with open(tmp, "wb") as f:
                    for block in r.iter_bytes(1 << 20):
                        digest.update(block)
                        f.write(block)
            if artifact.get("sha256") and digest.hexdigest() != artifact["sha256"]:
                tmp.unlink()
                raise ApiError(200, f"{name}: the downloaded bytes do not match the stored sha256")
            os.replace(tmp, target)
            out.append(target)
        return out

    # -- exports (MLflow, TensorBoard) -------------------------------------------------------
    def export_mlflow(self, job_id: str, tracking_uri: str, *, experiment: str | None = None,
                      register_model: bool = False, model_name: str | None = None, wait: bool = False,
                      timeout: float = 600.0, interval: float = 1.0) -> dict:
        """Queue a push of the job to an MLflow tracking server; with `wait`, the export once it
        is `done` or `failed` (TimeoutError after `timeout` seconds)."""
        body = {"tracking_uri": tracking_uri, "register_model": register_model,
                **{k: v for k, v in {"experiment": experiment, "model_name": model_name}.items() if v}}
        export = self.request("POST", f"/api/jobs/{job_id}/exports/mlflow/", json=body, ok=(200, 201, 202)).json()
        deadline = time.monotonic() + timeout
        while wait and export.get("status") in ("pending", "running"):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the MLflow export is still {export['status']} after {timeout} s")
            time.sleep(interval)
            export = self.get(f"/api/jobs/{job_id}/exports/mlflow/{export['id']}/")
        return export

    def export_tensorboard(self, job_id: str, directory: str | os.PathLike, *, extract: bool = True) -> Path:
        """The job's history as TensorBoard event files: the server's .tar.gz saved into `directory`
        and (by default) unpacked there with tarfile's "data" filter (no links, nothing outside).
        Returns the directory to give `tensorboard --logdir` (or the archive with extract=False)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"tensorboard-{job_id}.tar.gz"
        with self.http.stream("GET", f"/api/jobs/{job_id}/exports/tensorboard/") as r:
            if r.status_code != 200:
                r.read()
                raise ApiError(r.status_code, *_message(r))
            with open(target, "wb") as f:
                for block in r.iter_bytes(1 << 20):
                    f.write(block)
        if not extract:
            return target
        with tarfile.open(target, "r:gz") as archive:
            archive.extractall(directory, filter="data")
        target.unlink()
        return directory
