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

A multi-node job (TrainConfig.nodes > 1) runs one such task per machine of its gang. The leader
(node 0, which claimed the job) picks a free port, publishes `address:port` as the run's c10d
rendezvous endpoint (lifecycle.publish_rendezvous) and starts torchrun as the rendezvous host
(`--rdzv-backend=c10d --rdzv-conf is_host=1`) instead of `--standalone`; every other machine's
task (`follow_gang`, started by the node task) starts torchrun as a client of that endpoint,
stops its ranks when the run loses the job, and ends once the leader has recorded the end. The
ranks are numbered by node rank (workers/adapters/ddp_rank.py), so global rank 0, the one that
reports, is on the leader. If the machines do not meet within TRAINYARD_RDZV_TIMEOUT_SECONDS
(torchrun's `join_timeout`), no rank starts, and the leader requeues the job, the attempt counted.
Until a rank runs there is no rank 0 to read a cancel: the leader's lease loop reads it (and its
ownership) itself meanwhile and kills torchrun (`_beat`).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings

from webapp.jobs import lifecycle

log = logging.getLogger(__name__)


def _preexec() -> None:
    from workers.adapters.ddp_rank import die_with_parent

    die_with_parent()


@dataclass(frozen=True)
class Rendezvous:
    """One machine's part in a multi-node run's c10d rendezvous."""

    nodes: int
    endpoint: str  # "address:port" of the leader's rendezvous store
    run_id: str  # the job and the owner token: each attempt meets only its own machines
    is_host: bool  # the leader hosts the store
    address: str  # this machine's address, as the other machines reach it
    timeout: int  # seconds the machines may take to meet (torchrun's join_timeout)


def worker_address() -> str:
    """The address the other machines of a gang reach this one at: TRAINYARD_WORKER_ADDRESS, else
    this machine's address on the route to the broker (Redis, which every worker reaches), else
    127.0.0.1."""
    if settings.TRAINYARD_WORKER_ADDRESS:
        return settings.TRAINYARD_WORKER_ADDRESS
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((urlparse(settings.CELERY_BROKER_URL).hostname or "127.0.0.1", 9))  # no packet is sent
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def free_port() -> int:
    """A TCP port free on every interface now, for the leader's rendezvous store."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def command(n: int, spec_path: Path, rdzv: Rendezvous | None = None) -> list[str]:
    if rdzv is None:
        launch = ["--standalone"]
    else:
        launch = [f"--nnodes={rdzv.nodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv.endpoint}",
                  f"--rdzv-id={rdzv.run_id}", f"--rdzv-conf=is_host={int(rdzv.is_host)},join_timeout={rdzv.timeout}",
                  f"--local-addr={rdzv.address}"]
    return [sys.executable, "-m", "torch.distributed.run", *launch, f"--nproc-per-node={n}",
            "--max-restarts=0", "--monitor-interval=0.5", "-m", "workers.adapters.ddp_rank", str(spec_path)]


def rank_env(n: int, node_rank: int | None = None) -> dict:
    """The ranks' environment: the reserved GPUs on CUDA; on the CPU the machine's cores shared out;
    on a multi-node run this machine's node rank (the ranks' numbering, ddp_rank.global_rank, needs
    torchrun's shared agent store, so its opt-out is removed)."""
    env = dict(os.environ)
    if node_rank is not None:
        env["TRAINYARD_NODE_RANK"] = str(node_rank)
        env.pop("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", None)
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
    nodes = int(start.train_config.get("nodes", 1))
    run_dir = Path(start.output_dir) / f".ddp-{start.token}"
    spec = _write_spec(start, run_dir)
    rdzv = None
    if nodes > 1:  # the leader of a gang: the rendezvous is here
        address = worker_address()
        rdzv = Rendezvous(nodes, f"{address}:{free_port()}", _run_id(start), True, address,
                          settings.TRAINYARD_RDZV_TIMEOUT_SECONDS)
        if not lifecycle.publish_rendezvous(start, rdzv.endpoint):
            shutil.rmtree(run_dir, ignore_errors=True)
            lifecycle.end_run(start, None)
            return "fenced"
    tail: collections.deque[str] = collections.deque(maxlen=40)
    terminated = threading.Event()
    proc, reader = _start_torchrun(start, command(n, spec, rdzv), rank_env(n, 0 if rdzv else None), tail)
    lease = threading.Thread(target=_keep_lease, args=(start, proc, run_dir), daemon=True,
                             name=f"lease-{start.job_id}")
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
        return _record_end(start, n, run_dir, rc, tail, terminated.is_set(), nodes=nodes)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def follow_gang(start) -> str | None:
    """Run this machine's ranks of a multi-node job whose leader claimed it (`start` from
    lifecycle.join_gang, node rank > 0). Rank 0, on the leader, reports and decides every stop;
    this task stops its ranks itself only when the run no longer owns the job (ended, requeued,
    fenced), and on SIGTERM asks rank 0 for a requeue. It returns once the leader has recorded
    the end (so this worker is busy exactly as long as the job holds it), or, if the leader's
    lease lapsed (the leader is gone), requeues the job itself, the attempt counted: one requeue
    whoever does it, as every requeue is conditional on the owner token."""
    try:
        start.check()
    except Exception:  # noqa: BLE001 - the leader fails the job with the same reason
        return _follower_end(start, None, [])
    n, nodes = int(start.train_config.get("gpus", 1)), int(start.train_config.get("nodes", 1))
    run_dir = Path(start.output_dir) / f".ddp-{start.token}-node{start.node_rank}"
    spec = _write_spec(start, run_dir)
    rdzv = Rendezvous(nodes, start.endpoint, _run_id(start), False, worker_address(),
                      settings.TRAINYARD_RDZV_TIMEOUT_SECONDS)
    tail: collections.deque[str] = collections.deque(maxlen=40)
    terminated = threading.Event()
    proc, reader = _start_torchrun(start, command(n, spec, rdzv), rank_env(n, start.node_rank), tail)
    previous = _set_sigterm(lambda signum, frame: terminated.set())
    try:
        rc = _follow(start, proc, run_dir, terminated)
    finally:
        _set_sigterm(previous)
        _kill_all(proc, run_dir)
        reader.join(5)
    try:
        return _follower_end(start, rc, tail)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


OWNER_CHECK_SECONDS = 1.0


def _follow(start, proc, run_dir: Path, terminated: threading.Event) -> int:
    """torchrun's exit status on a follower; its ranks are killed once the run lost the job."""
    asked, checked = False, 0.0
    while True:
        try:
            return proc.wait(0.2)
        except subprocess.TimeoutExpired:
            pass
        if terminated.is_set() and not asked:  # this machine is shutting down: rank 0 stops every rank
            asked = True
            lifecycle.request_gang_requeue(start)
        if time.monotonic() - checked > OWNER_CHECK_SECONDS:
            checked = time.monotonic()
            try:
                if not lifecycle.still_owned(start):
                    _signal_all(proc, run_dir, signal.SIGKILL)
            except Exception:  # noqa: BLE001 - the next check retries
                log.exception("ownership check failed for job %s", start.job_id)


def _follower_end(start, rc: int | None, tail) -> str | None:
    """Wait until the leader has recorded the run's end (or its lease lapsed: then requeue)."""
    try:
        while lifecycle.still_owned(start):
            if lifecycle.leader_lost(start):
                return lifecycle.requeue_lost_gang(start, (
                    f"the leader of the job's machines stopped responding (node {start.node_rank}'s torchrun exit "
                    f"status {rc}: {' | '.join(list(tail)[-3:])})"))
            time.sleep(0.5)
        return f"node {start.node_rank}: done"
    finally:
        lifecycle.end_run(start, None)  # this worker's row shows no job (its busy state follows the job's)


def _write_spec(start, run_dir: Path) -> Path:
    """The run's spec in a folder private to this attempt (and machine), for every rank here."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    spec = run_dir / "spec.json"
    spec.write_text(json.dumps({
        "job_id": str(start.job_id), "token": start.token, "architecture": start.architecture,
        "model_config": start.model_config, "train_config": start.train_config, "dataset_dir": start.dataset_dir,
        "output_dir": start.output_dir, "extra": start.extra, "is_hf": start.is_hf, "timeout": settings.TRAINYARD_DDP_TIMEOUT_SECONDS}))
    return spec


def _run_id(start) -> str:
    return f"{start.job_id}-{start.token}"


def _start_torchrun(start, argv: list[str], env: dict, tail) -> tuple[subprocess.Popen, threading.Thread]:
    """torchrun in a process group of its own, its output read into `tail` by a thread."""
    proc = subprocess.Popen(argv, env=env, cwd=settings.BASE_DIR, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_preexec, text=True, errors="replace")
    reader = threading.Thread(target=_read, args=(proc, tail), daemon=True, name=f"torchrun-{start.job_id}")
    reader.start()
    return proc, reader


def _error_files(start, run_dir: Path) -> list[Path]:
    """The ranks' error files of this run: this machine's, and those of the other machines of a
    multi-node run (their folders are beside this one on the shared data dir, and are removed by
    their tasks only once this one has recorded the end)."""
    files = list(run_dir.glob("rank-*.error"))
    files += Path(start.output_dir).glob(f".ddp-{start.token}-node*/rank-*.error")
    return sorted(files)


def _record_end(start, n: int, run_dir: Path, rc: int, tail, terminated: bool, nodes: int = 1) -> str | None:
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
    errors = [json.loads(p.read_text()) for p in _error_files(start, run_dir)]
    log.warning("job %s: torchrun exited %s without a result; ranks' errors: %s; output: %s", start.job_id, rc,
                [e["error"] for e in errors], " | ".join(tail))
    if terminated:  # this worker is shutting down and the ranks did not finish their stop in time
        return "requeued" if lifecycle.requeue_stopped_job(start.job_id, start.worker, token=start.token) else None
    if nodes > 1 and not any(run_dir.glob("rank-*.pid")):  # no rank started here: the machines never met
        missing = lifecycle.missing_nodes(start)
        return lifecycle.requeue_lost_gang(start, (
            f"the job's {nodes} machines did not meet within TRAINYARD_RDZV_TIMEOUT_SECONDS="
            f"{settings.TRAINYARD_RDZV_TIMEOUT_SECONDS} s" + (f" ({', '.join(missing)} never joined)" if missing else "")))
    n *= nodes  # the ranks of every machine
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


def _keep_lease(start, proc, run_dir: Path) -> None:
    """While torchrun lives, this worker holds the job's lease (rank 0's reporter renews it too,
    once it runs): the ranks' start (torch's import, the rendezvous) can take longer than a lease.
    Until a rank runs here (no rank-*.pid yet: the machines of a multi-node job may take up to
    the rendezvous timeout to meet) there is no rank 0 to read a cancel or a lost ownership, so
    this loop does: torchrun is killed, and the end is recorded as for machines that never met
    (cancelled, or fenced)."""
    from django.db import connection

    try:
        while proc.poll() is None:
            try:
                if not _beat(start, proc, run_dir):
                    return
            except Exception:  # noqa: BLE001 - the next beat retries
                log.exception("lease renewal failed for job %s", start.job_id)
            time.sleep(min(1.0, settings.TRAINYARD_HEARTBEAT_SECONDS))
    finally:
        connection.close()


def _beat(start, proc, run_dir: Path) -> bool:
    """One beat of _keep_lease; False once there is nothing more for it to do."""
    owned = lifecycle.touch_lease(start.job_id, start.token)
    if any(run_dir.glob("rank-*.pid")):
        return owned  # no longer this run's job: rank 0's fenced writes stop the ranks
    if not owned or lifecycle.cancel_requested(start):
        log.info("job %s: cancelled or no longer this run's before its ranks started; stopping torchrun",
                 start.job_id)
        _signal_all(proc, run_dir, signal.SIGKILL)
        return False
    return True


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
