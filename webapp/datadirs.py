"""The data dir's fixed parts: created by `migrate` and `runstack`, never by importing settings.

Settings only name the paths (and read the generated secret key when it is there), so importing
them in a test, a `manage.py check` or a worker writes nothing. The first `migrate` (or `runstack`,
which migrates) makes the data dir before SQLite opens its file there, the upload temp dir that
Django's temporary-file upload handler writes into, STATIC_ROOT (WhiteNoise warns when it is
missing) and a generated SECRET_KEY when none is configured.
"""

from __future__ import annotations

import os
from pathlib import Path

SECRET_KEY_FILENAME = "secret_key"
# Files of one installation are its processes' own: the database, uploads, caches, checkpoints
# and models are created 0600 / 0700, whatever umask the shell that started them had.
PRIVATE_UMASK = 0o077


def restrict_umask() -> None:
    """Called where the processes start (manage.py through prepare_data_dir, the ASGI app, the
    Celery worker): every file and directory they create is then private to the account."""
    os.umask(PRIVATE_UMASK)


def make_private_dir(path: Path, *, tighten: bool = False) -> None:
    """Create `path` (and parents) 0700. `tighten`: an existing one that others can read is
    closed to them too (only for the data dir itself, which is ours alone, never for a parent)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if tighten and path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)


def secret_key_file(data_dir: Path) -> Path:
    return Path(data_dir) / SECRET_KEY_FILENAME


def ensure_secret_key(data_dir: Path) -> Path:
    """Generate the secret key file once (0600, written atomically so two processes starting
    together never read half a key); an existing one is kept so sessions survive restarts."""
    from django.core.management.utils import get_random_secret_key

    key_file = secret_key_file(data_dir)
    if not key_file.exists():
        make_private_dir(key_file.parent)
        tmp = key_file.with_name(f"{SECRET_KEY_FILENAME}.{os.getpid()}.tmp")
        tmp.write_text(get_random_secret_key())
        os.chmod(tmp, 0o600)
        os.replace(tmp, key_file)
    return key_file


def prepare_data_dir() -> None:
    """Create what the running web tier expects under the configured data dir."""
    from django.conf import settings

    restrict_umask()
    make_private_dir(Path(settings.DATA_DIR), tighten=True)
    for directory in (settings.FILE_UPLOAD_TEMP_DIR, settings.STATIC_ROOT):
        make_private_dir(Path(directory))
    if not os.environ.get("SECRET_KEY") and not os.environ.get("SECRET_KEY_FILE"):
        key_file = ensure_secret_key(Path(settings.DATA_DIR))
        # This process read its settings before the file existed (a random key for itself
        # alone): from here on it signs with the key every other process reads.
        settings.SECRET_KEY = key_file.read_text().strip()
