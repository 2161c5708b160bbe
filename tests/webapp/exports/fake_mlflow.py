"""A small MLflow tracking server for the tests (the real one needs Flask and SQLAlchemy): the
REST endpoints a push uses, in memory, plus the artifact service (`--serve-artifacts`). Every
request is recorded (method, path, headers, body) so tests can check what reached the server."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

API = "/api/2.0/mlflow/"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts/"


class FakeMlflow:
    def __init__(self, artifact_location: str = "mlflow-artifacts:/{exp}"):
        self.artifact_location = artifact_location  # "{exp}" is replaced by the experiment id
        self.requests: list[dict] = []
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.metrics: dict[str, list[dict]] = {}
        self.params: dict[str, dict] = {}
        self.artifacts: dict[str, bytes] = {}
        self.models: dict[str, list[dict]] = {}
        # (status, headers, JSON body or None for an empty one) for every request
        self.answer_all: tuple[int, dict, dict | None] | None = None
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # -- the API -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, dict]:
        if path.startswith(ARTIFACTS) and method == "PUT":
            self.artifacts[path[len(ARTIFACTS):]] = body
            return 200, {}
        if not path.startswith(API):
            return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": path}
        name = path[len(API):]
        data = json.loads(body or b"{}") if method != "GET" else {k: v[0] for k, v in query.items()}
        handler = getattr(self, "_" + name.replace("/", "_").replace("-", "_"), None)
        if handler is None:
            return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": name}
        return handler(data)

    def _experiments_get_by_name(self, data):
        for e in self.experiments.values():
            if e["name"] == data["experiment_name"]:
                return 200, {"experiment": e}
        return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"}

    def _experiments_create(self, data):
        exp_id = str(len(self.experiments) + 1)
        self.experiments[exp_id] = {"experiment_id": exp_id, "name": data["name"], "lifecycle_stage": "active",
                                    "artifact_location": self.artifact_location.format(exp=exp_id)}
        return 200, {"experiment_id": exp_id}

    def _runs_create(self, data):
        run_id = uuid.uuid4().hex
        exp = self.experiments[data["experiment_id"]]
        info = {"run_id": run_id, "run_uuid": run_id, "experiment_id": exp["experiment_id"],
                "user_id": data.get("user_id", ""), "status": "RUNNING", "start_time": data.get("start_time"),
                "artifact_uri": f"{exp['artifact_location']}/{run_id}/artifacts", "lifecycle_stage": "active",
                "run_name": data.get("run_name", "")}
        self.runs[run_id] = {"info": info, "data": {"tags": data.get("tags", [])}}
        self.metrics[run_id], self.params[run_id] = [], {}
        return 200, {"run": self.runs[run_id]}

    def _runs_log_batch(self, data):
        if len(data.get("metrics", [])) > 1000 or len(data.get("params", [])) > 100:
            return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "too many entities in one batch"}
        self.metrics[data["run_id"]].extend(data.get("metrics", []))
        self.params[data["run_id"]].update({p["key"]: p["value"] for p in data.get("params", [])})
        return 200, {}

    def _runs_update(self, data):
        info = self.runs[data["run_id"]]["info"]
        info.update(status=data.get("status", info["status"]), end_time=data.get("end_time"))
        return 200, {"run_info": info}

    def _runs_delete(self, data):
        self.runs[data["run_id"]]["info"]["lifecycle_stage"] = "deleted"
        return 200, {}

    def _registered_models_create(self, data):
        if data["name"] in self.models:
            return 400, {"error_code": "RESOURCE_ALREADY_EXISTS", "message": "exists"}
        self.models[data["name"]] = []
        return 200, {"registered_model": {"name": data["name"]}}

    def _model_versions_create(self, data):
        versions = self.models[data["name"]]
        version = {"name": data["name"], "version": str(len(versions) + 1), "source": data["source"],
                   "run_id": data.get("run_id", ""), "status": "READY"}
        versions.append(version)
        return 200, {"model_version": version}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self):
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake.lock:
                    fake.requests.append({"method": self.command, "path": parts.path, "headers": dict(self.headers),
                                          "body": body})
                    if fake.answer_all is not None:
                        status, headers, payload = fake.answer_all
                    else:
                        status, payload = fake.handle(self.command, parts.path, parse_qs(parts.query), body)
                        headers = {}
                out = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler
