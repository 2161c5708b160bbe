from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from webapp.celery import app

ROOT = Path(__file__).resolve().parents[2]


def test_celery_is_configured_for_long_gpu_jobs():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is True
    assert conf.task_serializer == "json" and conf.accept_content == ["json"] and conf.result_serializer == "json"
    assert conf.broker_transport_options["visibility_timeout"] > settings.TRAINYARD_JOB_TIME_LIMIT
    assert conf.task_time_limit == settings.TRAINYARD_JOB_TIME_LIMIT
    assert conf.task_routes["trainyard.train_job"]["queue"] == "train"
    assert conf.task_routes["trainyard.ingest_dataset"]["queue"] == "ingest"


def _settings_in_subprocess(env: dict, expr: str) -> str:
    code = f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='webapp.settings'; django.setup(); " \
           f"from django.conf import settings as s; print({expr})"
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | env
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_default_database_is_sqlite_in_wal_mode_with_busy_timeout(tmp_path):
    out = _settings_in_subprocess({"TRAINYARD_DATA_DIR": str(tmp_path)}, "s.DATABASES['default']")
    assert "sqlite3" in out and "'timeout': 30" in out and "IMMEDIATE" in out and "journal_mode=WAL" in out
    assert str(tmp_path) in out


def test_database_url_selects_postgresql(tmp_path):
    out = _settings_in_subprocess({"TRAINYARD_DATA_DIR": str(tmp_path),
                                   "DATABASE_URL": "postgres://u:p@db.example:5433/trainyard"},
                                  "s.DATABASES['default']['ENGINE'], s.DATABASES['default']['HOST']")
    assert "postgresql" in out and "db.example" in out


def test_env_settings_and_secret_key_file(tmp_path):
    key = tmp_path / "key"
    key.write_text("from-a-file-" + "x" * 50)
    out = _settings_in_subprocess({"TRAINYARD_DATA_DIR": str(tmp_path), "SECRET_KEY_FILE": str(key),
                                   "ALLOWED_HOSTS": "a.example,b.example", "DEBUG": "1",
                                   "REDIS_URL": "redis://r.example:6380/2"},
                                  "s.SECRET_KEY, s.ALLOWED_HOSTS, s.DEBUG, s.CELERY_BROKER_URL")
    assert "from-a-file-" in out and "['a.example', 'b.example']" in out and "True" in out
    assert "redis://r.example:6380/2" in out


def _manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | env | {
        "DJANGO_SETTINGS_MODULE": "webapp.settings"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, check=True)


def test_generated_secret_key_persists_in_data_dir(tmp_path):
    env = {"TRAINYARD_DATA_DIR": str(tmp_path), "SECRET_KEY": ""}
    _manage(env, "migrate", "--noinput")  # the key is generated on migrate (and by runstack), never at import
    first = _settings_in_subprocess(env, "s.SECRET_KEY")
    assert first == _settings_in_subprocess(env, "s.SECRET_KEY") and len(first) >= 50
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == first and key_file.stat().st_mode & 0o777 == 0o600


def test_importing_settings_creates_no_directory_and_writes_no_file(tmp_path):
    data = tmp_path / "fresh"  # not "data": the web tests' autouse fixture makes that one
    env = {"TRAINYARD_DATA_DIR": str(data), "SECRET_KEY": ""}
    first = _settings_in_subprocess(env, "s.SECRET_KEY")
    # Before the first migrate: a random key for the process alone, and nothing on disk.
    assert len(first) >= 50 and first != _settings_in_subprocess(env, "s.SECRET_KEY")
    assert not data.exists()


def test_migrate_creates_the_data_dir_before_sqlite_opens_its_file(tmp_path):
    data = tmp_path / "fresh" / "data"
    _manage({"TRAINYARD_DATA_DIR": str(data), "SECRET_KEY": ""}, "migrate", "--noinput")
    assert (data / "trainyard.sqlite3").is_file() and (data / "tmp").is_dir() and (data / "staticfiles").is_dir()
    assert len((data / "secret_key").read_text().strip()) >= 50


def test_configured_secret_key_is_not_generated(tmp_path, monkeypatch):
    from webapp.datadirs import prepare_data_dir

    key = tmp_path / "key"
    key.write_text("k" * 60)
    monkeypatch.setenv("SECRET_KEY_FILE", str(key))
    prepare_data_dir()
    assert not (Path(settings.DATA_DIR) / "secret_key").exists()
    assert Path(settings.FILE_UPLOAD_TEMP_DIR).is_dir()


@pytest.mark.parametrize("raw,expected", [("1", True), ("TRUE", True), (" yes ", True), ("On", True),
                                          ("0", False), ("false", False), ("No", False), ("off", False),
                                          ("", True), (None, True)])
def test_env_bool_reads_yes_and_no(monkeypatch, raw, expected):
    from webapp.settings import env_bool

    if raw is None:
        monkeypatch.delenv("TRAINYARD_TEST_FLAG", raising=False)
    else:
        monkeypatch.setenv("TRAINYARD_TEST_FLAG", raw)
    assert env_bool("TRAINYARD_TEST_FLAG", True) is expected  # empty or unset: the default


@pytest.mark.parametrize("raw", ["ture", "2", "enabled", "y e s"])
def test_env_bool_refuses_a_value_it_does_not_understand(monkeypatch, raw):
    from django.core.exceptions import ImproperlyConfigured

    from webapp.settings import env_bool

    monkeypatch.setenv("SECURE_COOKIES", raw)
    with pytest.raises(ImproperlyConfigured) as err:
        env_bool("SECURE_COOKIES", False)
    message = str(err.value)
    assert "SECURE_COOKIES" in message and repr(raw) in message
    assert all(word in message for word in ("1", "true", "yes", "on", "0", "false", "no", "off"))


def test_env_int_names_the_variable(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from webapp.settings import env_int

    monkeypatch.setenv("TRAINYARD_MAX_ATTEMPTS", "three")
    with pytest.raises(ImproperlyConfigured, match="TRAINYARD_MAX_ATTEMPTS='three' is not a whole number"):
        env_int("TRAINYARD_MAX_ATTEMPTS", 3)
    monkeypatch.setenv("TRAINYARD_MAX_ATTEMPTS", " 7 ")
    assert env_int("TRAINYARD_MAX_ATTEMPTS", 3) == 7
    monkeypatch.setenv("TRAINYARD_MAX_ATTEMPTS", "")
    assert env_int("TRAINYARD_MAX_ATTEMPTS", 3) == 3


def test_a_bad_boolean_stops_start_up(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "DJANGO_SETTINGS_MODULE": "webapp.settings", "TRAINYARD_DATA_DIR": str(tmp_path), "DEBUG": "ture"}
    r = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "ImproperlyConfigured" in r.stderr and "DEBUG='ture'" in r.stderr


def test_argon2_first():
    assert settings.PASSWORD_HASHERS[0].endswith("Argon2PasswordHasher") or "tests" in os.environ.get(
        "DJANGO_SETTINGS_MODULE", "tests.settings")
    from webapp import settings as prod

    assert prod.PASSWORD_HASHERS[0].endswith("Argon2PasswordHasher")
    assert "*" not in prod.ALLOWED_HOSTS


@pytest.mark.parametrize("check_env", [{}])
def test_check_deploy_passes_with_production_settings(tmp_path, check_env):
    (tmp_path / "tmp").mkdir()  # the upload temp dir, as `migrate` leaves it (Django checks that it exists)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "DJANGO_SETTINGS_MODULE": "webapp.settings", "TRAINYARD_DATA_DIR": str(tmp_path),
        "SECRET_KEY": "prod-" + "k8Zq3vX9pL2mN7" * 5, "DEBUG": "0", "SECURE_SSL_REDIRECT": "1",
        "SECURE_COOKIES": "1", "SECURE_HSTS_SECONDS": "31536000", "ALLOWED_HOSTS": "trainyard.example",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1", "SECURE_HSTS_PRELOAD": "1",  # each its own choice now
        "TRAINYARD_CHANNEL_PREFIX": "prod", "TRAINYARD_MAX_REQUEST_MB": "64",
    }
    r = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_web_process_pools_its_postgresql_connections_and_no_other_process_does(tmp_path):
    env = {"TRAINYARD_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgres://u:p@db.example:5433/trainyard"}
    expr = "s.DATABASES['default'].get('OPTIONS', {}).get('pool'), s.DATABASES['default']['CONN_MAX_AGE']"
    assert _settings_in_subprocess(env, expr) == "None 0"  # a worker, manage.py: no pool
    web = {**env, "TRAINYARD_WEB_PROCESS": "1", "DB_CONN_MAX_AGE": "60"}
    assert _settings_in_subprocess(web, expr) == "{'min_size': 1, 'max_size': 20, 'timeout': 60} 0"
    assert _settings_in_subprocess({**web, "DB_POOL_MAX_SIZE": "5", "DB_POOL_TIMEOUT": "9"}, expr) == \
        "{'min_size': 1, 'max_size': 5, 'timeout': 9} 0"
    assert _settings_in_subprocess({**web, "DB_POOL_MAX_SIZE": "0"}, expr) == "None 60"
    sqlite = {"TRAINYARD_DATA_DIR": str(tmp_path), "TRAINYARD_WEB_PROCESS": "1"}
    assert "pool" not in _settings_in_subprocess(sqlite, "s.DATABASES['default'].get('OPTIONS')")
