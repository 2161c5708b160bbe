"""Where `trainyard login` keeps the server URL and token: `$XDG_CONFIG_HOME/trainyard/config.json`
(default `~/.config/...`), written with mode 0600 from the start (never readable by others, even
for a moment), and the resume store of unfinished uploads beside it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "trainyard"


def config_path() -> Path:
    return config_dir() / "config.json"


def _write_private(path: Path, data: Any) -> None:
    """Atomic write of a 0600 JSON file: a temp file opened 0600, fsynced, renamed over."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # O_CREAT's mode is masked by the umask only downwards; make it exact
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} could not be read ({exc}); run `trainyard login` again") from None
    return data if isinstance(data, dict) else {}


class ConfigError(Exception):
    pass


def load() -> dict:
    return _read(config_path())


def save(url: str, token: str) -> Path:
    path = config_path()
    _write_private(path, {"url": url.rstrip("/"), "token": token})
    return path


class UploadStore:
    """Unfinished tus uploads, keyed by server + file fingerprint, so a second `datasets upload`
    of the same file resumes where the first stopped (tus-js-client's urlStorage, for the CLI)."""

    def __init__(self, path: Path | None = None):
        self.path = path or config_dir() / "uploads.json"

    def get(self, key: str) -> str | None:
        value = _read(self.path).get(key)
        return value if isinstance(value, str) else None

    def put(self, key: str, url: str) -> None:
        data = _read(self.path)
        data[key] = url
        _write_private(self.path, data)

    def remove(self, key: str) -> None:
        data = _read(self.path)
        if data.pop(key, None) is not None:
            _write_private(self.path, data)
