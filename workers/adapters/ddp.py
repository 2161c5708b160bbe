"""A multi-device job (TrainConfig.gpus > 1): the Celery task starts torchrun and supervises it.

torch.distributed does the training (workers/training/distributed.py); Celery only scheduled the
job onto a worker with enough devices. The task, already holding the claim (lifecycle.start_run):
1. writes the run's spec into a folder private to this attempt (`.ddp-<owner token>/`);
2. starts `python -m torch.distributed.run --standalone --nproc-per-node N -m
   workers.adapters.ddp_rank spec.json` in a process group of its own (a prefork pool process
   may not have multiprocessing children; a subprocess is fine), with `CUDA_VISIBLE_DEVICES`
   set to the worker's first N GPUs on CUDA. `--standalone` rendezvouses on a free local port,
   so two jobs on one host never collide;
3. waits. Rank 0 reports, heartbeats and reads the cancel / requeue flags itself
   (workers/adapters/ddp_rank.py); a SIGTERM to this process is passed on to torchrun and the
   ranks, and rank 0 stops them all at the same step for a requeue;
4. records the end from rank 0's `result.json`; without one, a rank died: a rank that raised
   an error of its own fails the job with it, a rank killed outright (or a whole gang lost to a
   peer's death) requeues the job with the attempt counted (TRAINYARD_MAX_ATTEMPTS bounds it);
5. on every exit path kills what is left (and, once rank 0's result is written, ranks that
   linger past a few seconds): torchrun's process group and every rank by the pid it
   wrote (ranks run in sessions of their own, and die with torchrun through PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings

from webapp.jobs import lifecycle

log = logging.getLogger(__name__)


def _preexec() -> None:
    from workers.adapters.ddp_rank import die_with_parent

    die_with_parent()


def command(n: int, spec_path: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
            "--max-restarts=0", "--monitor-interval=0.5", "-m", "workers.adapters.ddp_rank", str(spec_path)]


def rank_env(n: int) -> dict:
    """The ranks' environment: the reserved GPUs on CUDA; on the CPU the machine's cores shared out."""
    env = dict(os.environ)
    from workers.adapters import gpu

    gpus = gpu.telemetry()
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g["index"]) for g in gpus[:n])
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    env["OMP_NUM_THREADS"] = str(max(1, cpus // n))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_gang(start, n: int) -> str | None:
    """Run the claimed job `start` (lifecycle.RunStart) on `n` ranks; returns end_run's outcome."""
    try:
        start.check()
    except Exception as exc:  # noqa: BLE001 - e.g. the dataset was deleted: failed, with the reason
        return lifecycle.end_run(start, "failed", error=f"{type(exc).__name__}: {exc}")
    run_dir = Path(start.output_dir) / f".ddp-{start.token}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    spec = run_dir / "spec.json"
    spec.write_text(json.dumps({
        "job_id": str(start.job_id), "token": start.token, "architecture": start.architecture,
        "model_config": start.model_config, "train_config": start.train_config, "dataset_dir": start.dataset_dir,
        "output_dir": start.output_dir, "extra": start.extra, "is_hf": start.is_hf, "timeout": settings.TRAINYARD_DDP_TIMEOUT_SECONDS}))
    tail: collections.deque[str] = collections.deque(maxlen=40)
    terminated = threading.Event()
    proc = subprocess.Popen(command(n, spec), env=rank_env(n), cwd=settings.BASE_DIR, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_preexec, text=True, errors="replace")
    reader = threading.Thread(target=_read, args=(proc, tail), daemon=True, name=f"torchrun-{start.job_id}")
    reader.start()
    lease = threading.Thread(target=_keep_lease, args=(start, proc), daemon=True, name=f"lease-{start.job_id}")
    lease.start()

    def on_sigterm(signum, frame):  # a shutdown: every rank hears it, rank 0 stops them together
        terminated.set()
        _signal_all(proc, run_dir, signal.SIGTERM)

    previous = _set_sigterm(on_sigterm)
    try:
        rc = _wait(proc, run_dir)
    finally:
        _set_sigterm(previous)
        _kill_all(proc, run_dir)
        reader.join(5)
    try:
        return _record_end(start, n, run_dir, rc, tail, terminated.is_set())
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _record_end(start, n: int, run_dir: Path, rc: int, tail, terminated: bool) -> str | None:
    result_file = run_dir / "result.json"
    if result_file.exists():
        out = json.loads(result_file.read_text())
        if out["fenced"]:
            log.warning("job %s: the run with owner token %s lost the job; its output is discarded",
                        start.job_id, start.token)
            lifecycle.end_run(start, None)
            return "fenced"
        return lifecycle.end_run(start, out["status"], metrics=out.get("metrics"), artifacts=out.get("artifacts") or [],
                                 requeue=out.get("stop_reason") == "requeue", test_metrics=out.get("test_metrics"),
                                 warnings=out.get("warnings"))
    errors = [json.loads(p.read_text()) for p in sorted(run_dir.glob("rank-*.error"))]
    log.warning("job %s: torchrun exited %s without a result; ranks' errors: %s; output: %s", start.job_id, rc,
                [e["error"] for e in errors], " | ".join(tail))
    if terminated:  # this worker is shutting down and the ranks did not finish their stop in time
        return "requeued" if lifecycle.requeue_stopped_job(start.job_id, start.worker, token=start.token) else None
    own = [e for e in errors if not e["peer_lost"]]
    if own:  # a bug or a bad setting: the same error would come back on every attempt
        first = min(own, key=lambda e: e["rank"])
        return lifecycle.end_run(start, "failed", error=f"rank {first['rank']} of {n}: {first['error']}")
    lost = sorted(set(range(n)) - {e["rank"] for e in errors})
    why = (f"rank {', '.join(map(str, lost))} of {n} died" if lost else f"the {n} ranks lost each other") + (
        f" (torchrun exit status {rc})")
    return lifecycle.requeue_lost_gang(start, why)


RESULT_GRACE_SECONDS = 3.0


def _wait(proc, run_dir: Path) -> int:
    """torchrun's exit status. Once rank 0 has written the result, the job's outcome is known:
    ranks still there after a short grace are killed, not waited for."""
    done_at = None
    while True:
        try:
            return proc.wait(0.2)
        except subprocess.TimeoutExpired:
            pass
        if done_at is None and (run_dir / "result.json").exists():
            done_at = time.monotonic()
        if done_at is not None and time.monotonic() - done_at > RESULT_GRACE_SECONDS:
            _signal_all(proc, run_dir, signal.SIGKILL)
            return proc.wait()


def _keep_lease(start, proc) -> None:
    """While torchrun lives, this worker holds the job's lease (rank 0's reporter renews it too,
    once it runs): the ranks' start (torch's import, the rendezvous) can take longer than a lease."""
    from django.db import connection

    try:
        while proc.poll() is None:
            try:
                if not lifecycle.touch_lease(start.job_id, start.token):
                    return  # no longer this run's job: rank 0's fenced writes stop the ranks
            except Exception:  # noqa: BLE001 - the next beat retries
                log.exception("lease renewal failed for job %s", start.job_id)
            time.sleep(min(1.0, settings.TRAINYARD_HEARTBEAT_SECONDS))
    finally:
        connection.close()


def _read(proc, tail) -> None:
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            tail.append(line[:500])
            log.debug("torchrun: %s", line)


def _set_sigterm(handler):
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a threads pool): the main process's path still works
        return None


def _rank_pids(run_dir: Path) -> list[int]:
    pids = []
    for p in run_dir.glob("rank-*.pid"):
        try:
            pid = int(p.read_text())
            # Still one of ours (a pid is reused once its process is gone): its command names the run.
            if str(run_dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                pids.append(pid)
        except (OSError, ValueError):
            continue
    return pids


def _signal_all(proc, run_dir: Path, sig) -> None:
    for target in (lambda: os.killpg(proc.pid, sig), *(lambda p=p: os.kill(p, sig) for p in _rank_pids(run_dir))):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass


def _kill_all(proc, run_dir: Path) -> None:
    """No orphan: torchrun's group and every rank get SIGKILL, then torchrun is reaped."""
    _signal_all(proc, run_dir, signal.SIGKILL)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5
    while _rank_pids(run_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
