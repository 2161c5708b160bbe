"""bench/gpu_check.sh cannot rot: its dry run (every step on CPU, tiny sizes) passes here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.stack  # a few minutes of training and subprocesses: not in test-fast


def test_the_gpu_check_dry_run_passes_every_step(tmp_path):
    state = tmp_path / "state.json"
    r = subprocess.run([str(ROOT / "bench" / "gpu_check.sh"), "--dry-run", "--fresh", "--state", str(state)],
                       cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    table = r.stdout[r.stdout.index("| step |"):]
    for step in ("families", "resume after SIGKILL", "NVML telemetry", "overhead CNN preset", "overhead ResNet-18",
                 "MiniLM fine-tuning", "DDP scaling"):
        assert f"| {step} |" in table, table
    assert "FAILED" not in table
    # Resumable: a second run skips what the first finished.
    again = subprocess.run([str(ROOT / "bench" / "gpu_check.sh"), "--dry-run", "--state", str(state)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "done in an earlier run" in again.stdout
