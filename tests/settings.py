"""Settings for the pytest-django suite: a throwaway data dir, an in-memory channel layer."""

import os
import tempfile

os.environ.setdefault("TRAINYARD_DATA_DIR", tempfile.mkdtemp(prefix="trainyard-test-"))

from webapp.settings import *  # noqa: E402,F403

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}  # emptied per test (conftest)
TRAINYARD_CHANNEL_PREFIX = "trainyard-tests"
TRAINYARD_METRICS_PUSH_SECONDS = 0  # no pusher thread: recorded metrics reach Redis only when /metrics is served
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user fixtures

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, not Django's shared-cache memory database: WAL and busy timeouts behave as in production.
    DATABASES["default"]["TEST"]["NAME"] = str(DATA_DIR / "test.sqlite3")  # noqa: F405
