"""What an upload may leave behind: the checks that a rejected upload left nothing."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings


def leftover_uploads() -> list[str]:
    dirs = [Path(settings.FILE_UPLOAD_TEMP_DIR), Path(settings.DATA_DIR) / "uploads"]
    return [str(p) for d in dirs if d.exists() for p in d.iterdir()]
