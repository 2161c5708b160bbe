"""bench/gpu_llm.py cannot rot: its dry run (the tiny GPT-2, LoRA on CPU) runs here, and the
case it cannot run (QLoRA without CUDA) is named with its reason, never silently left out."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_llm_bench_dry_run_measures_lora_and_names_why_qlora_is_skipped():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_llm.py"), "--dry-run"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert any(line.startswith("lora: ") and "tokens/s" in line and "peak memory" in line for line in lines), lines
    assert any(line.startswith("skip qlora: ") and "CUDA" in line for line in lines), lines
    report = json.loads(lines[-1])
    lora = next(c for c in report["cases"] if c["case"] == "lora")
    assert lora["status"] == "succeeded" and lora["tokens_per_s"] > 0 and lora["peak_memory_mib"] > 0
    assert math.isfinite(lora["final_train_loss"]) and math.isfinite(lora["final_val_loss"])  # a few tiny steps:
    # whether the loss has moved yet is not the bench's question (the LoRA tests check learning)
    assert "CUDA" in next(c for c in report["cases"] if c["case"] == "qlora")["skipped"]
