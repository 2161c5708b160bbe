"""Operator metrics (`/metrics`), the load balancer's probes (`/healthz`, `/readyz`) and JSON logs.

The metrics are read back the way Prometheus reads them (prometheus_client's text parser) and
compared with the rows the tests made; the recorded ones go through a real redis-server.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import free_port, redis_binary, wait_for
from tests.webapp.factories import finished_job, ready_dataset, running_job, worker
from webapp.cluster.models import Worker
from webapp.jobs.consumers import JobConsumer
from webapp.jobs.events import append_events
from webapp.jobs.lifecycle import claim_job, finish_job
from webapp.jobs.models import Job
from webapp.monitoring import recorder
from webapp.monitoring.logs import JsonFormatter

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-for-tests"
BEARER = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1
GB = 1_000_000_000


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    port = free_port()
    proc = subprocess.Popen([redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: redis.Redis.from_url(url).ping(), 20, "redis-server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def live_redis(settings, redis_url):
    """A real, empty Redis for this test, and nothing recorded before it."""
    redis.Redis.from_url(redis_url).flushall()
    settings.REDIS_URL = redis_url
    settings.TRAINYARD_METRICS_TOKEN = TOKEN
    recorder.reset()
    yield redis_url
    recorder.reset()


def scrape(client=None, headers=BEARER) -> dict:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def value(families: dict, sample: str, **labels) -> float:
    """The one sample named `sample` with exactly these labels."""
    found = [s.value for f in families.values() for s in f.samples if s.name == sample and s.labels == labels]
    assert len(found) == 1, f"{sample}{labels}: {found}"
    return found[0]


def samples(families: dict, sample: str) -> list:
    return [s for f in families.values() for s in f.samples if s.name == sample]


# --- who may read /metrics ------------------------------------------------------------------------

def test_metrics_need_the_token_or_a_staff_session(alice, staff, live_redis):
    anonymous = Client().get("/metrics")
    assert anonymous.status_code == 401 and "Bearer" in anonymous["WWW-Authenticate"]  # not the login page
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Token {TOKEN}").status_code == 401
    signed_in = Client()
    signed_in.force_login(alice)
    assert signed_in.get("/metrics").status_code == 403  # signed in, not staff
    admin = Client()
    admin.force_login(staff)
    assert "trainyard_jobs" in scrape(admin, headers={})
    assert "trainyard_jobs" in scrape()  # the bearer token
    assert Client().post("/metrics", **BEARER).status_code == 405


def test_openmetrics_when_the_scraper_asks_for_it(alice, live_redis):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics

    running_job(alice)
    response = Client().get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0", **BEARER)
    assert response["Content-Type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics(response.content.decode())}
    assert families["trainyard_job_queue_wait_seconds"].type == "gaugehistogram"
    assert families["trainyard_jobs_finished"].type == "counter"
    assert [s.value for s in families["trainyard_jobs"].samples if s.labels == {"status": "running"}] == [1]


def test_without_a_configured_token_no_bearer_is_accepted(settings, live_redis):
    settings.TRAINYARD_METRICS_TOKEN = ""
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


# --- what the database knows ------------------------------------------------------------------------

def _job(owner, dataset, status, *, created_ago, started_ago=None, **fields) -> Job:
    job = Job.objects.create(owner=owner, dataset=dataset, name=status, architecture="mlp", status=status, **fields)
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(
        created_at=now - timedelta(seconds=created_ago),
        started_at=None if started_ago is None else now - timedelta(seconds=started_ago))
    return job


def test_metrics_match_the_database(alice, bob, live_redis):
    ds = ready_dataset(alice)
    h100 = {"index": 0, "name": "NVIDIA H100", "memory_total": 80 * GB, "memory_used": 20 * GB,
            "utilization": 75, "temperature": 61}
    no_telemetry = {"index": 1, "name": "NVIDIA H100", "memory_total": 80 * GB, "memory_used": None,
                    "utilization": None, "temperature": None}
    worker("gpu0@a", queues="train,train.gpu0@a", gpus=[h100, no_telemetry])
    worker("ingest@b", queues="ingest,infer", draining=True)
    worker("gpu1@c", queues="train", gpus=[h100], heartbeat_age=3600)  # killed: silent
    worker("old@d", queues="train", status=Worker.Status.OFFLINE, heartbeat_age=7200)

    _job(alice, ds, Job.Status.QUEUED, created_ago=300)
    _job(bob, ds, Job.Status.QUEUED, created_ago=10, dispatched_at=timezone.now(), worker_name="gpu0@a")
    _job(alice, ds, Job.Status.RUNNING, created_ago=25, started_ago=20, worker_name="gpu0@a")  # waited 5 s
    done = finished_job(alice, ds)
    Job.objects.filter(pk=done.pk).update(created_at=timezone.now() - timedelta(seconds=150),
                                          started_at=timezone.now() - timedelta(seconds=100))  # waited 50 s
    _job(bob, ds, Job.Status.FAILED, created_ago=9000, started_ago=7200)  # started before the window
    _job(bob, ds, Job.Status.CANCELLED, created_ago=60)  # never started

    m = scrape()

    for status in Job.Status.values:
        assert value(m, "trainyard_jobs", status=status) == Job.objects.filter(status=status).count()
    assert value(m, "trainyard_jobs", status="queued") == 2
    assert value(m, "trainyard_jobs_dispatched") == 1
    assert 299 <= value(m, "trainyard_queue_oldest_wait_seconds") <= 330

    # Queue wait of the jobs started in the last hour: 5 s and 50 s.
    assert m["trainyard_job_queue_wait_seconds"].type == "histogram"
    assert value(m, "trainyard_job_queue_wait_seconds_bucket", le="1.0") == 0
    assert value(m, "trainyard_job_queue_wait_seconds_bucket", le="5.0") == 1
    assert value(m, "trainyard_job_queue_wait_seconds_bucket", le="30.0") == 1
    assert value(m, "trainyard_job_queue_wait_seconds_bucket", le="60.0") == 2
    assert value(m, "trainyard_job_queue_wait_seconds_bucket", le="+Inf") == 2
    assert value(m, "trainyard_job_queue_wait_seconds_gcount") == 2
    assert value(m, "trainyard_job_queue_wait_seconds_gsum") == pytest.approx(55, abs=0.5)

    assert value(m, "trainyard_workers_online", queue="train") == 1
    assert value(m, "trainyard_workers_online", queue="ingest") == 0
    assert value(m, "trainyard_workers_draining", queue="ingest") == 1
    assert value(m, "trainyard_workers_draining", queue="infer") == 1
    assert value(m, "trainyard_workers_draining", queue="train") == 0
    assert value(m, "trainyard_workers_busy") == 1
    assert value(m, "trainyard_workers_silent") == 1
    ages = {s.labels["worker"]: s.value for s in samples(m, "trainyard_worker_heartbeat_age_seconds")}
    assert set(ages) == {"gpu0@a", "ingest@b", "gpu1@c"}  # offline workers are not listed
    assert ages["gpu0@a"] < 30 and 3590 < ages["gpu1@c"] < 3700

    gpu0 = {"worker": "gpu0@a", "gpu": "0", "model": "NVIDIA H100"}
    assert value(m, "trainyard_gpu_memory_used_bytes", **gpu0) == 20 * GB
    assert value(m, "trainyard_gpu_memory_total_bytes", **gpu0) == 80 * GB
    assert value(m, "trainyard_gpu_utilization_ratio", **gpu0) == 0.75
    assert value(m, "trainyard_gpu_temperature_celsius", **gpu0) == 61
    assert value(m, "trainyard_gpu_memory_total_bytes", worker="gpu0@a", gpu="1", model="NVIDIA H100") == 80 * GB
    assert len(samples(m, "trainyard_gpu_memory_used_bytes")) == 1  # no reading: no sample; silent worker: none
    assert value(m, "trainyard_datasets_ingesting") == 0


def test_database_metrics_are_served_while_redis_is_down(alice, settings):
    settings.REDIS_URL = DEAD_REDIS
    settings.TRAINYARD_METRICS_TOKEN = TOKEN
    recorder.reset()
    running_job(alice)
    m = scrape()
    assert value(m, "trainyard_jobs", status="running") == 1
    assert value(m, "trainyard_metrics_store_up") == 0
    assert "trainyard_event_append_seconds" not in m


# --- what the processes record ------------------------------------------------------------------------

def test_recorded_latencies_and_outcomes(alice, client_alice, live_redis, sent_tasks,
                                         django_capture_on_commit_callbacks):
    job = running_job(alice)
    append_events(job.pk, [("log", {"level": "info", "text": "hello"})])
    assert client_alice.get(f"/api/jobs/{job.pk}/events/").status_code == 200
    assert client_alice.get(f"/api/jobs/{job.pk}/events/?history=1").status_code == 200
    worker("gpu0@a")
    queued = Job.objects.create(owner=alice, dataset=job.dataset, name="q", architecture="mlp",
                                dispatched_at=timezone.now() - timedelta(seconds=2), worker_name="gpu0@a")
    with django_capture_on_commit_callbacks(execute=True):
        claimed = claim_job(queued.pk, "gpu0@a")  # one append (its status event)
        finish_job(claimed.pk, Job.Status.SUCCEEDED, token=claimed.owner_token)  # one more

    m = scrape()
    assert value(m, "trainyard_metrics_store_up") == 1
    assert value(m, "trainyard_event_append_seconds_count") == 3
    assert value(m, "trainyard_event_append_seconds_bucket", le="+Inf") == 3
    assert 0 < value(m, "trainyard_event_append_seconds_sum") < 30
    assert value(m, "trainyard_event_history_seconds_count", mode="tail") == 1
    assert value(m, "trainyard_event_history_seconds_count", mode="history") == 1
    assert value(m, "trainyard_dispatch_latency_seconds_count") == 1
    assert 2 <= value(m, "trainyard_dispatch_latency_seconds_sum") < 30
    assert value(m, "trainyard_dispatch_latency_seconds_bucket", le="1.0") == 0
    assert value(m, "trainyard_dispatch_latency_seconds_bucket", le="5.0") == 1
    assert value(m, "trainyard_jobs_finished_total", status="succeeded") == 1
    assert value(m, "trainyard_jobs_finished_total", status="failed") == 0  # seeded: a rate is 0, not absent
    assert m["trainyard_jobs_finished"].type == "counter"

    again = scrape()  # a second scrape counts nothing twice
    assert value(again, "trainyard_event_append_seconds_count") == 3


def test_other_processes_add_up_and_their_gauges_expire(live_redis, alice):
    """Another process (a worker, another uvicorn worker) records through the same Redis."""
    code = ("import django; django.setup(); from webapp.monitoring import recorder as r; "
            "r.gauge_add(r.WEBSOCKETS, 2, socket='user'); r.inc(r.JOBS_FINISHED, status='failed'); "
            "r.observe(r.INGEST, 3.0, kind='tabular', outcome='ready'); assert r.flush()")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "DJANGO_SETTINGS_MODULE": "tests.settings", "REDIS_URL": live_redis}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120)
    recorder.inc(recorder.JOBS_FINISHED, status="failed")  # and this one

    m = scrape()
    assert value(m, "trainyard_jobs_finished_total", status="failed") == 2
    assert value(m, "trainyard_websocket_connections", socket="user") == 2
    assert value(m, "trainyard_ingest_duration_seconds_count", kind="tabular", outcome="ready") == 1
    assert value(m, "trainyard_ingest_duration_seconds_bucket", kind="tabular", outcome="ready", le="1.0") == 0
    assert value(m, "trainyard_ingest_duration_seconds_bucket", kind="tabular", outcome="ready", le="5.0") == 1
    client = redis.Redis.from_url(live_redis)
    keys = client.keys("*:metrics:proc:*")
    assert len(keys) == 1 and 0 < client.ttl(keys[0]) <= 30  # a dead process stops counting
    client.delete(*keys)
    assert value(scrape(), "trainyard_websocket_connections", socket="user") == 0


def test_a_failed_push_is_kept_and_counted_once(db, live_redis, settings):
    settings.REDIS_URL = DEAD_REDIS
    recorder.inc(recorder.JOBS_LOST)
    assert recorder.flush() is False
    settings.REDIS_URL = live_redis
    recorder.inc(recorder.JOBS_LOST)
    assert value(scrape(), "trainyard_jobs_lost_total") == 2
    assert value(scrape(), "trainyard_jobs_lost_total") == 2


def test_each_process_pushes_on_its_own(live_redis, settings):
    settings.TRAINYARD_METRICS_PUSH_SECONDS = 0.05
    recorder.inc(recorder.JOBS_LOST)
    client = redis.Redis.from_url(live_redis)
    wait_for(lambda: client.hlen(f"{settings.TRAINYARD_CHANNEL_PREFIX}:metrics:shared") == 1, 5, "the push")


@pytest.mark.django_db(transaction=True)
def test_open_websockets_are_counted_until_they_close(alice, live_redis):
    job = finished_job(alice)

    async def scenario():
        c = WebsocketCommunicator(JobConsumer.as_asgi(), f"/ws/jobs/{job.pk}/",
                                  headers=[(b"origin", b"http://localhost")])
        c.scope["user"] = alice
        c.scope["url_route"] = {"kwargs": {"pk": job.pk}}
        assert (await c.connect())[0]
        during = await sync_to_async(scrape)()
        await c.disconnect()
        return during, await sync_to_async(scrape)()

    during, after = async_to_sync(scenario)()
    assert value(during, "trainyard_websocket_connections", socket="job") == 1
    assert value(during, "trainyard_websocket_connections", socket="user") == 0
    assert value(after, "trainyard_websocket_connections", socket="job") == 0
    assert value(after, "trainyard_websocket_connections_opened_total", socket="job") == 1


# --- probes ---------------------------------------------------------------------------------------------

def probe(path: str, method: str = "GET", host: bytes = b"10.0.0.7") -> tuple[int, dict, bytes]:
    """A request through the ASGI application uvicorn serves (the probes are answered before
    Django); the Host is the node's address, which is not in ALLOWED_HOSTS."""
    from webapp.asgi import application

    async def go():
        c = HttpCommunicator(application, method, path, headers=[(b"host", host)])
        return await c.get_response(timeout=10)

    response = async_to_sync(go)()
    return response["status"], dict(response["headers"]), response["body"]


@pytest.mark.django_db(transaction=True)  # the readiness checks run in a thread of their own
def test_liveness_answers_any_host_without_sign_in(settings):
    for path in ("/healthz", "/healthz/"):
        status, headers, body = probe(path)
        assert status == 200 and json.loads(body) == {"status": "ok"} and headers[b"cache-control"] == b"no-store"
    status, _, body = probe("/healthz", "HEAD")
    assert status == 200 and body == b""
    assert probe("/jobs/")[0] == 400  # the host rule still holds for everything else
    assert probe("/jobs/", host=b"localhost")[0] == 302  # and the sign-in redirect


@pytest.mark.django_db(transaction=True)
def test_readiness_with_database_redis_and_a_worker(settings, live_redis):
    worker("gpu0@a", heartbeat_age=settings.TRAINYARD_JOB_LEASE_SECONDS - 20)  # past 3 beats, inside the lease
    for _ in range(20):  # no rate limit, no sign-in
        status, _, body = probe("/readyz")
        assert status == 200
    assert json.loads(body) == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "workers": "ok"}}


@pytest.mark.django_db(transaction=True)
def test_readiness_fails_when_redis_is_unreachable(settings):
    settings.REDIS_URL = DEAD_REDIS
    worker("gpu0@a")
    status, _, body = probe("/readyz")
    assert status == 503
    answer = json.loads(body)
    assert answer["failed"] == "redis" and answer["checks"] == {"database": "ok", "redis": "failed", "workers": "ok"}
    assert b"127.0.0.1" not in body and b"refused" not in body.lower()  # nothing but the check's name


@pytest.mark.django_db(transaction=True)
def test_readiness_fails_when_no_worker_is_alive(settings, live_redis):
    worker("gpu0@a", heartbeat_age=settings.TRAINYARD_JOB_LEASE_SECONDS + 30)
    worker("gone@b", status=Worker.Status.OFFLINE)
    status, _, body = probe("/readyz")
    assert status == 503 and json.loads(body)["failed"] == "workers"
    settings.TRAINYARD_READYZ_REQUIRE_WORKER = False
    status, _, body = probe("/readyz")
    assert status == 200 and json.loads(body)["checks"] == {"database": "ok", "redis": "ok"}


@pytest.mark.django_db(transaction=True)
def test_readiness_fails_when_the_database_is_unreachable(settings, live_redis, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("connection refused by db.internal:5432")

    monkeypatch.setattr("webapp.monitoring.health.check_database", broken)
    status, _, body = probe("/readyz")
    assert status == 503 and json.loads(body)["checks"] == {"database": "failed", "redis": "ok", "workers": "unknown"}
    assert b"db.internal" not in body


@pytest.mark.django_db(transaction=True)
def test_a_post_to_a_probe_path_is_not_a_probe():
    assert probe("/readyz", "POST", host=b"localhost")[0] in (403, 404)  # Django's answer (CSRF / no such page)


# --- JSON logs ------------------------------------------------------------------------------------------

def test_json_formatter_keeps_extras_and_tracebacks():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("trainyard.test").makeRecord(
            "trainyard.test", logging.ERROR, __file__, 1, "job %s failed", ("j1",), sys.exc_info(),
            extra={"job": "j1", "attempt": 2, "worker": object()})
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "job j1 failed" and line["level"] == "ERROR" and line["logger"] == "trainyard.test"
    assert line["job"] == "j1" and line["attempt"] == 2 and line["worker"].startswith("<object")
    assert "ValueError: boom" in line["exc_info"] and line["time"].endswith("Z")


def _python(env: dict, code: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "DJANGO_SETTINGS_MODULE": "webapp.settings"} | env
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=120)


def test_log_format_json_writes_one_object_per_line(tmp_path):
    done = _python({"TRAINYARD_DATA_DIR": str(tmp_path), "TRAINYARD_LOG_FORMAT": "json"},
                   "import django, logging; django.setup(); "
                   "logging.getLogger('webapp.x').warning('queue %s', 'train', extra={'jobs': 3})")
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stderr.strip().splitlines()[-1])
    assert line["message"] == "queue train" and line["jobs"] == 3 and line["level"] == "WARNING"
    bad = _python({"TRAINYARD_DATA_DIR": str(tmp_path), "TRAINYARD_LOG_FORMAT": "xml"},
                  "import django; django.setup()")
    assert bad.returncode != 0 and "TRAINYARD_LOG_FORMAT='xml'" in bad.stderr


def test_uvicorn_writes_its_own_lines_as_json_too(monkeypatch):
    from webapp import server
    from webapp import settings as settings_module

    monkeypatch.setattr(settings_module, "TRAINYARD_LOG_FORMAT", "json")
    argv = server.server_argv("127.0.0.1", 8000)
    config = json.loads(Path(argv[argv.index("--log-config") + 1]).read_text())
    logging.config.dictConfig(config | {"loggers": {}})  # loads (the formatter imports no Django)
    assert config["formatters"]["json"]["()"] == "webapp.monitoring.logs.JsonFormatter"
    assert config["loggers"]["uvicorn"]["handlers"] == ["default"]
    monkeypatch.setattr(settings_module, "TRAINYARD_LOG_FORMAT", "text")
    assert "--log-config" not in server.server_argv("127.0.0.1", 8000)
