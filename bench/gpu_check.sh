#!/bin/sh
# The one prepared GPU check (bench/gpu_check.py): safe to start cold. It uses the project's
# .venv when there is one (made by `make`), else makes it when PyPI answers, else runs with the
# system's python if torch imports there. Resumable: a rerun skips the steps already done.
#   bench/gpu_check.sh [--dry-run] [--fresh]
set -eu
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  if python3 -c "import torch" 2>/dev/null; then
    PY=python3
  else
    echo "no .venv: installing (make .venv/.dev-installed)" >&2
    make .venv/.dev-installed >&2
  fi
fi
exec "$PY" bench/gpu_check.py "$@"
