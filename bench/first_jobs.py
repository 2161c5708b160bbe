"""How long the guided first jobs take: the sample datasets added in one click, then each
sample's first job on the stack's CPU worker, one after the other.

    .venv/bin/python bench/first_jobs.py

Starts the real stack (redis-server, a Celery worker, uvicorn) and prints, per kind, the job's
run time (started → finished, as the job page shows it), its wall time from the click, and the
validation metric reached. The onboarding promises under a minute on a CPU.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

from tests.integration.test_first_jobs import run_first_jobs  # noqa: E402
from tests.stack import running_stack  # noqa: E402


def main() -> None:
    with running_stack() as stack:
        t0 = time.monotonic()
        results = run_first_jobs(stack, "alice")
        total = time.monotonic() - t0
    print(f"{'kind':<10} {'status':<10} {'run s':>7}  metric")
    for kind, (job, seconds) in results.items():
        metric = "perplexity" if "perplexity" in job["metrics"] else "accuracy"
        value = job["metrics"].get(metric)
        print(f"{kind:<10} {job['status']:<10} {seconds or 0:7.1f}  {metric} {value:.3f}" if value is not None
              else f"{kind:<10} {job['status']:<10} {seconds or 0:7.1f}")
    print(f"all {len(results)} (samples added, ingested, trained one after the other): {total:.1f} s; "
          f"CPUs: {os.cpu_count()}")


if __name__ == "__main__":
    main()
