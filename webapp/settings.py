"""Trainyard settings: everything comes from environment variables with defaults that run
locally with no configuration (SQLite under the data dir, Redis on localhost)."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

from webapp.datadirs import secret_key_file

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    """A string setting; `NAME_FILE` (a path) wins over `NAME`, for secrets."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


TRUE_VALUES = ("1", "true", "yes", "on")
FALSE_VALUES = ("0", "false", "no", "off")


def env_bool(name: str, default: bool = False) -> bool:
    """A yes/no setting. A value that is neither (a typo such as `DEBUG=ture`) stops start-up,
    as healthchecks does: reading it as false would silently switch a security option off."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a yes/no value: use one of {', '.join(TRUE_VALUES + FALSE_VALUES)} "
        "(any case), or leave it unset for the default")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        # int()'s own message does not say which of the many variables was wrong.
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None


def env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in env_str(name, default).split(",") if part.strip()]


# Importing settings creates no directory and writes no file (a test run, `manage.py check` or a
# typo in an env var must not leave a ./var behind): `migrate` and `runstack` create the data dir,
# its tmp/ and staticfiles/ and the generated secret key (webapp/datadirs.py).
DATA_DIR = Path(env_str("TRAINYARD_DATA_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    # No key configured: `migrate`/`runstack` keep a generated one in the data dir so sessions
    # survive restarts; settings only read it. Before the first of those has run (tests, a bare
    # `manage.py check`) the fallback is a random key for this process alone, written nowhere.
    key_file = secret_key_file(DATA_DIR)
    if key_file.is_file():
        return key_file.read_text().strip()
    return get_random_secret_key()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "axes",
    "webapp.accounts",
    "webapp.datasets",
    "webapp.jobs",
    "webapp.cluster",
    "webapp.hub",
    "webapp.inference",
    "webapp.exports",
    "webapp.sweeps",
    "webapp.projects",
    "webapp.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "webapp.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

# Login throttling (django-axes; rules in webapp/accounts/lockout.py): after AXES_FAILURE_LIMIT
# wrong passwords for one (normalised user name, address) pair, that pair is locked for the
# cool-off period, doubled for each further lock-out within a day; other accounts from the same
# address and the same account from elsewhere are not affected.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("TRAINYARD_LOGIN_FAILURE_LIMIT", 5)
TRAINYARD_LOGIN_COOLOFF_MINUTES = env_int("TRAINYARD_LOGIN_COOLOFF_MINUTES", 15)
AXES_COOLOFF_TIME = "webapp.accounts.lockout.cool_off"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_CALLABLE = "webapp.accounts.lockout.normalised_username"
AXES_LOCKOUT_CALLABLE = "webapp.accounts.lockout.lockout_response"
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # the progressive cool-off counts earlier lock-outs from it
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked.html"
AXES_IPWARE_PROXY_COUNT = env_int("TRAINYARD_PROXY_COUNT", 0) or None  # proxies in front: see docs/operations.md
AXES_VERBOSE = False

ROOT_URLCONF = "webapp.urls"
ASGI_APPLICATION = "webapp.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database() -> dict:
    url = env_str("DATABASE_URL")
    if not url:
        url = f"sqlite:///{DATA_DIR / 'trainyard.sqlite3'}"
    db = dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # Django's backend, plus making the data dir on first connect (webapp/db/sqlite3).
        db["ENGINE"] = "webapp.db.sqlite3"
        # One host only: WAL lets the web server read while a worker writes; IMMEDIATE
        # transactions take the write lock up front so concurrent writers wait (up to the
        # timeout) instead of failing with "database is locked" mid-transaction.
        db["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        db.setdefault("TEST", {})
    elif db["ENGINE"].endswith("postgresql") and env_bool("TRAINYARD_WEB_PROCESS", False):
        # The web server runs each request's synchronous view in a thread of its own, each with
        # its own connection: a burst of 200 page loads opened 200 and PostgreSQL (100 by
        # default) refused the rest. A pool (psycopg_pool through Django's backend) bounds them;
        # a request waits up to DB_POOL_TIMEOUT seconds for a free one. The web process only
        # (webapp/asgi.py marks it): Celery's prefork children must not inherit a pool's threads.
        db.setdefault("OPTIONS", {})["application_name"] = "trainyard-web"  # in pg_stat_activity
        pool_size = env_int("DB_POOL_MAX_SIZE", 20)
        if pool_size > 0:
            db["CONN_MAX_AGE"] = 0  # Django's pool and persistent connections exclude each other
            db["OPTIONS"]["pool"] = {
                "min_size": 1, "max_size": pool_size, "timeout": env_int("DB_POOL_TIMEOUT", 60)}
    return db


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "jobs:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Uploads. One request body may be at most TRAINYARD_MAX_REQUEST_MB: webapp/limits.py answers 413
# on the stream, before Django buffers anything. Larger files go through the chunked upload API
# (the web page always uses it), TRAINYARD_MAX_UPLOAD_MB caps the whole file.
MAX_UPLOAD_BYTES = env_int("TRAINYARD_MAX_UPLOAD_MB", 4096) * 1024 * 1024
# The dataset cache a training run may hold in memory (0 = half the machine's RAM); a larger one
# is read from its files a few batches ahead (workers/training/filecache.py).
TRAINYARD_CACHE_MEMORY_MB = env_int("TRAINYARD_CACHE_MEMORY_MB", 0)
# Processes an ingest worker decodes images with (0 = the CPUs it may run on, at most 8).
TRAINYARD_INGEST_PROCESSES = env_int("TRAINYARD_INGEST_PROCESSES", 0)
MAX_REQUEST_BYTES = env_int("TRAINYARD_MAX_REQUEST_MB", 64) * 1024 * 1024
UPLOAD_CHUNK_BYTES = env_int("TRAINYARD_UPLOAD_CHUNK_MB", 8) * 1024 * 1024
TRAINYARD_USER_QUOTA_MB = env_int("TRAINYARD_USER_QUOTA_MB", 20 * 1024)  # per user: every byte (accounts/storage.py)
TRAINYARD_MAX_OPEN_UPLOADS = env_int("TRAINYARD_MAX_OPEN_UPLOADS", 5)  # chunked/tus uploads in progress per user
# Try many (a file of inputs predicted at once): the file's size (one request, so at most the
# request limit), and the batches a user may have waiting or running at once.
TRAINYARD_MAX_BATCH_MB = env_int("TRAINYARD_MAX_BATCH_MB", 50)
TRAINYARD_MAX_ACTIVE_BATCHES = env_int("TRAINYARD_MAX_ACTIVE_BATCHES", 2)
# Request bodies above 1 MiB spool to disk (Django's ASGI handler keeps smaller ones in memory).
FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
FILE_UPLOAD_TEMP_DIR = str(DATA_DIR / "tmp")
FILE_UPLOAD_HANDLERS = ["webapp.datasets.uploads.LimitedTemporaryFileUploadHandler"]
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 500

# The web server's own limits (uvicorn, webapp/server.py): the request line plus headers of one
# request, one websocket message from a client, connections and tasks at once (then 503).
TRAINYARD_MAX_HEADER_BYTES = env_int("TRAINYARD_MAX_HEADER_KB", 64) * 1024
TRAINYARD_WS_MAX_MESSAGE_BYTES = env_int("TRAINYARD_WS_MAX_MESSAGE_KB", 64) * 1024
TRAINYARD_WEB_MAX_CONNECTIONS = env_int("TRAINYARD_WEB_MAX_CONNECTIONS", 4000)

# Security headers; production hardening switches on when DEBUG is off.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
# Each its own choice: includeSubDomains binds every host under the domain to https, and preload
# asks browsers to ship that in their built-in list (hard to undo). Neither follows from the first.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

# The live-event fan-out. "pubsub" (default): one Redis PUBLISH per batch of events, copied to
# every viewer inside each web server process (200 viewers of a job cost one Redis message, not 200).
# Messages to a page that is not connected are dropped, which is fine: the database holds every
# event and pages re-sync by sequence number. "lists": channels_redis' list-based layer (each
# viewer gets its own copy in Redis, kept up to `expiry` seconds).
TRAINYARD_CHANNEL_LAYER = env_str("TRAINYARD_CHANNEL_LAYER", "pubsub")
if TRAINYARD_CHANNEL_LAYER not in ("pubsub", "lists"):
    raise ImproperlyConfigured("TRAINYARD_CHANNEL_LAYER must be pubsub or lists")


def _default_channel_prefix() -> str:
    """Redis pub/sub ignores database numbers, so two installations on one Redis would hear each
    other's `job.<id>` / `user.<n>` groups: each gets its own prefix, derived from what makes it
    itself (data dir and database), the same in every process of one installation."""
    import hashlib

    database = env_str("DATABASE_URL") or str(DATA_DIR / "trainyard.sqlite3")
    return "ty" + hashlib.sha256(f"{DATA_DIR}\n{database}".encode()).hexdigest()[:12]


TRAINYARD_CHANNEL_PREFIX = env_str("TRAINYARD_CHANNEL_PREFIX") or _default_channel_prefix()
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": TRAINYARD_CHANNEL_PREFIX},
    } if TRAINYARD_CHANNEL_LAYER == "pubsub" else {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "capacity": 500, "expiry": 30, "prefix": TRAINYARD_CHANNEL_PREFIX},
    }
}

# Celery: long GPU jobs. A message is acknowledged only after the task returns, a worker
# that dies gives its message back, and each worker reserves one job at a time.
TRAINYARD_JOB_TIME_LIMIT = env_int("TRAINYARD_JOB_TIME_LIMIT", 7 * 24 * 3600)
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Must exceed the longest job, or Redis hands a running job's message to another worker
    # (which then finds the job claimed and leaves it: claim_job).
    "visibility_timeout": env_int("TRAINYARD_VISIBILITY_TIMEOUT", TRAINYARD_JOB_TIME_LIMIT + 3600),
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_TIME_LIMIT = TRAINYARD_JOB_TIME_LIMIT
CELERY_TASK_DEFAULT_QUEUE = "train"
CELERY_TASK_ROUTES = {
    "trainyard.train_job": {"queue": env_str("TRAINYARD_TRAIN_QUEUE", "train")},
    "trainyard.ingest_dataset": {"queue": "ingest"},
    "trainyard.extract_model_zip": {"queue": "ingest"},
    "trainyard.predict": {"queue": "infer"},
    "trainyard.export_onnx": {"queue": "infer"},
    "trainyard.predict_batch": {"queue": "infer"},
    "trainyard.notify_job": {"queue": "notify"},  # own worker: slow receivers delay no try/ONNX
    "trainyard.export_mlflow": {"queue": "notify"},  # outbound network work, like webhooks
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "webapp.accounts.tokens.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    # Per user and action, on the shared cache; 429 with Retry-After (webapp/throttles.py).
    "DEFAULT_THROTTLE_CLASSES": ["webapp.throttles.ActionThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        scope: env_str(f"TRAINYARD_RATE_{scope.upper()}", rate)
        for scope, rate in {"submit": "60/min", "try": "60/min", "upload": "30/min", "share": "30/min",
                            "export": "10/min"}.items()
    },
}
# The shared cache: throttle counters (every web process counts together). Redis DB and key
# prefix are this installation's own (several installations may share one Redis).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("TRAINYARD_CACHE_URL", REDIS_URL),
        "KEY_PREFIX": env_str("TRAINYARD_CACHE_PREFIX",
                              "trainyard-" + hashlib.sha256(str(DATA_DIR).encode()).hexdigest()[:12]),
        "TIMEOUT": 300,
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}
# API tokens (django-rest-knox): only a SHA-512 digest is stored, several named tokens per user,
# each with its own expiry, all revoked on a password change (webapp/accounts/tokens.py).
KNOX_TOKEN_MODEL = "accounts.ApiToken"
REST_KNOX = {
    "TOKEN_TTL": None,  # each token's expiry is chosen when it is created
    "TOKEN_PREFIX": "ty_",  # recognisable in logs and by secret scanners
    "AUTH_HEADER_PREFIX": "Token",  # `Bearer` is accepted too
}
TRAINYARD_MAX_TOKENS_PER_USER = env_int("TRAINYARD_MAX_TOKENS_PER_USER", 20)

# drf-spectacular names the enum components of same-named choice fields (kind, status, task)
# with a hash suffix and warns about it; the schema stays valid and complete.
SILENCED_SYSTEM_CHECKS = ["drf_spectacular.W001"]
SPECTACULAR_SETTINGS = {
    "TITLE": "Trainyard API",
    "DESCRIPTION": "Datasets, training jobs, live events and model downloads.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# Reporter: how often the worker flushes buffered events (seconds).
TRAINYARD_EVENT_FLUSH_SECONDS = float(env_str("TRAINYARD_EVENT_FLUSH_SECONDS", "0.25"))
TRAINYARD_HEARTBEAT_SECONDS = env_int("TRAINYARD_HEARTBEAT_SECONDS", 5)
# A running job whose worker has not written for this long is lost: it is requeued and resumes
# from its last checkpoint on another worker, at most TRAINYARD_MAX_ATTEMPTS runs in all.
TRAINYARD_JOB_LEASE_SECONDS = env_int("TRAINYARD_JOB_LEASE_SECONDS", 60)
TRAINYARD_MAX_ATTEMPTS = env_int("TRAINYARD_MAX_ATTEMPTS", 3)
# Devices a training worker declares (0 = its GPU count, or 1 on a CPU machine): a job asking for
# N devices (TrainConfig.gpus) runs on one worker with at least N; on CPU each is a gloo process.
TRAINYARD_WORKER_DEVICES = env_int("TRAINYARD_WORKER_DEVICES", 0)
# A multi-device job: how long a collective may wait for a rank (a dead rank ends the job by then).
TRAINYARD_DDP_TIMEOUT_SECONDS = env_int("TRAINYARD_DDP_TIMEOUT_SECONDS", 60)
# Multi-node jobs (TrainConfig.nodes > 1, docs/operations.md "Multi-node jobs"): the address other
# machines reach this worker at (the leader's c10d rendezvous endpoint and its ranks' store), the
# host name it registers under (workers on one host are one machine to the gang scheduler), and how
# long the nodes of a gang may take to meet before every reservation is released and the job requeued.
TRAINYARD_WORKER_ADDRESS = env_str("TRAINYARD_WORKER_ADDRESS", "")
TRAINYARD_WORKER_HOSTNAME = env_str("TRAINYARD_WORKER_HOSTNAME", "")
TRAINYARD_RDZV_TIMEOUT_SECONDS = env_int("TRAINYARD_RDZV_TIMEOUT_SECONDS", 120)
# Per-user cap on jobs waiting or running at once; the next submission gets HTTP 429.
TRAINYARD_MAX_ACTIVE_JOBS_PER_USER = env_int("TRAINYARD_MAX_ACTIVE_JOBS_PER_USER", 20)
# Jobs of one user running at once (the dispatcher's fair share); per-user overrides: Admin → User limits.
TRAINYARD_MAX_RUNNING_PER_USER = env_int("TRAINYARD_MAX_RUNNING_PER_USER", 2)

# Notifications (job finished / failed / cancelled): e-mail through Django's backend (SMTP by
# default; the tests use the file backend), webhooks POSTed by a worker task.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(DATA_DIR / "mail"))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "trainyard@localhost")
TRAINYARD_BASE_URL = env_str("TRAINYARD_BASE_URL", "http://127.0.0.1:8000")  # links in e-mails and webhooks
TRAINYARD_WEBHOOK_TIMEOUT = env_int("TRAINYARD_WEBHOOK_TIMEOUT", 10)  # seconds in all: resolve, connect, send, answer
# Internal receivers an admin allows despite the public-address rule: host names and networks,
# comma-separated ("hooks.internal, 10.1.0.0/16"); see webapp/accounts/webhooks.py.
TRAINYARD_WEBHOOK_ALLOWLIST = env_str("TRAINYARD_WEBHOOK_ALLOWLIST", "")
TRAINYARD_WEBHOOK_RETRIES = env_int("TRAINYARD_WEBHOOK_RETRIES", 3)

# Operator metrics (docs/operations.md, "Monitoring"): /metrics answers a bearer token equal to
# TRAINYARD_METRICS_TOKEN (or a staff session); no token set: staff sessions only.
TRAINYARD_METRICS_TOKEN = env_str("TRAINYARD_METRICS_TOKEN")
# The queue-wait histogram describes the jobs that started within this many seconds.
TRAINYARD_METRICS_WINDOW_SECONDS = env_int("TRAINYARD_METRICS_WINDOW_SECONDS", 3600)
# How often each process adds what it recorded (latencies, sockets) to Redis; 0: only when it serves /metrics.
TRAINYARD_METRICS_PUSH_SECONDS = env_int("TRAINYARD_METRICS_PUSH_SECONDS", 10)
# /readyz also needs a worker heartbeat younger than the job lease (0: database and Redis only).
TRAINYARD_READYZ_REQUIRE_WORKER = env_bool("TRAINYARD_READYZ_REQUIRE_WORKER", True)

# Logs: "text" (default) or "json", one object per line (webapp/monitoring/logs.py).
TRAINYARD_LOG_FORMAT = env_str("TRAINYARD_LOG_FORMAT", "text").strip().lower() or "text"
if TRAINYARD_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"TRAINYARD_LOG_FORMAT={TRAINYARD_LOG_FORMAT!r}: use text or json")

# Exports of a job's history (webapp/exports). MLflow pushes go to user-given tracking servers
# under the webhooks' address rules, with an allowlist of their own ("mlflow.internal,
# 10.2.0.0/16"); `file:` tracking URIs write on this server's disk and are refused unless they
# point inside TRAINYARD_MLFLOW_FILE_ROOT (unset: refused). One push may take at most
# TRAINYARD_MLFLOW_TIMEOUT seconds; each user has at most TRAINYARD_MLFLOW_MAX_ACTIVE pushes
# queued or running.
TRAINYARD_MLFLOW_ALLOWLIST = env_str("TRAINYARD_MLFLOW_ALLOWLIST", "")
TRAINYARD_MLFLOW_FILE_ROOT = env_str("TRAINYARD_MLFLOW_FILE_ROOT", "")
TRAINYARD_MLFLOW_TIMEOUT = env_int("TRAINYARD_MLFLOW_TIMEOUT", 900)
TRAINYARD_MLFLOW_MAX_ACTIVE = env_int("TRAINYARD_MLFLOW_MAX_ACTIVE", 3)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "webapp.monitoring.logs.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler",
                             **({"formatter": "json"} if TRAINYARD_LOG_FORMAT == "json" else {})}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
