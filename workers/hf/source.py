"""Where a pretrained model comes from, and the checks before anything of it is loaded.

A model is a `save_pretrained` folder: a registered local directory, a folder extracted from a
user's ZIP, or a snapshot downloaded from the Hugging Face Hub (only JSON, text and safetensors
files are downloaded: never pickles). Nothing here runs a model's own code: `auto_map` configs
are refused and every `from_pretrained` passes `trust_remote_code=False`.
"""

from __future__ import annotations

import os
from pathlib import Path

# The folder checks are a contract the web tier applies too (admin registration): one definition.
from models_zoo.contracts import PICKLE_SUFFIXES, ModelSourceError, check_folder, has_safetensors

__all__ = ["HUB_PATTERNS", "PICKLE_SUFFIXES", "ModelSourceError", "check_folder", "download", "fsync_tree",
           "has_safetensors", "resolve"]

# What a Hub snapshot may contain: configs, tokenizer files, safetensors weights.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "vocab*", "merges*"]


def download(repo_id: str) -> Path:
    """A Hub model's snapshot in the local cache (configs, tokenizer, safetensors only)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    offline = bool(constants.HF_HUB_OFFLINE)
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
    except GatedRepoError:
        raise ModelSourceError(f"{repo_id!r} is gated on the Hugging Face Hub: the server has no access to it; "
                               f"download it elsewhere and upload it as a ZIP") from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise ModelSourceError(f"there is no model {repo_id!r} on the Hugging Face Hub (or it is private)") from None
    except LocalEntryNotFoundError:
        why = "the worker is offline (HF_HUB_OFFLINE=1)" if offline else "the worker cannot reach the Hugging Face Hub"
        raise ModelSourceError(f"cannot download {repo_id!r}: {why} and has no cached copy of it; ask an admin to "
                               f"register a local copy, or upload the model as a ZIP on the Models page") from None
    except OSError as exc:  # connection refused, DNS, timeouts (httpx errors subclass neither)
        raise ModelSourceError(f"cannot download {repo_id!r} from the Hugging Face Hub: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - httpx / hub errors of many kinds: say what happened
        raise ModelSourceError(f"cannot download {repo_id!r} from the Hugging Face Hub "
                               f"({type(exc).__name__}: {exc})") from None
    if not has_safetensors(path) and not offline:
        try:
            from huggingface_hub import HfApi

            files = HfApi().list_repo_files(repo_id)
        except Exception:  # noqa: BLE001 - the check below still refuses a folder without weights
            files = []
        pickles = [f for f in files if f.lower().endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise ModelSourceError(
                f"{repo_id!r} publishes only pickle weights ({', '.join(pickles[:3])}), which Trainyard refuses "
                f"to load; choose a model with model.safetensors")
    return path


def resolve(model: str, local_path: str | None) -> tuple[Path, str, bool]:
    """(folder, label for messages, has weights) for the job's `model` setting.

    `local_path` is the registered or uploaded folder for "local:<name>" (the Celery task looks
    it up); a Hub id is downloaded. A Hub id is never read as a path on the worker.
    """
    if local_path is not None:
        folder, label = Path(local_path), f"the local model {model[len('local:'):]!r}"
    elif model.startswith("local:"):
        raise ModelSourceError(f"the local model {model[len('local:'):]!r} is not registered (or was deleted)")
    else:
        folder, label = download(model), f"the Hub model {model!r}"
    return folder, label, check_folder(folder, label)


def fsync_tree(folder: Path) -> None:
    """Flush every file of a freshly written folder, then the folder itself."""
    for p in folder.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
