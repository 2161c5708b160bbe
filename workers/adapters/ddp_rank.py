"""One rank of a multi-device job, started by torchrun (workers/adapters/ddp.py):
`python -m torch.distributed.run ... -m workers.adapters.ddp_rank <run dir>/spec.json`.

Rank 0 is the job's run as a one-process job would be: Django, its Reporter (events, heartbeat,
the cancel and requeue flags) and the ownership fence for its checkpoints and artifacts; it
writes the run's outcome to `result.json` for the supervising task, which records the end.
The other ranks train only: no Django, no database, nothing written. Why rank 0 reports itself
rather than piping events to the task: the reporter, the fence and the log capture are the
one-process job's, unchanged, so the dashboard sees one event stream and no second protocol
has to carry events, file moves and stop requests between two processes.

A rank that fails writes `rank-<r>.error` (the exception, and whether it was a collective that
lost a peer); a rank killed outright writes nothing, which is how the task tells a lost rank
(requeue, an attempt counted) from a bug in the job (failed, with the error).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from pathlib import Path

# Names of the communication failures a rank sees when another rank died (gloo, NCCL, the store).
PEER_LOST = ("DistError", "DistBackendError", "DistNetworkError", "DistStoreError")
PEER_LOST_TEXT = ("Connection closed by peer", "Connection reset by peer", "timed out", "Timeout",
                  "Broken pipe", "NCCL communicator was aborted", "ProcessGroupGloo")


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent (torchrun) dies, so no rank outlives a
    killed worker. (torchrun starts each rank in a session of its own: a group kill misses it.)"""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before the prctl
        os._exit(1)


def peer_lost(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    return bool(names & set(PEER_LOST)) or any(t in str(exc) for t in PEER_LOST_TEXT)


def global_rank() -> int:
    """This process's rank. On a multi-node job torchrun's c10d rendezvous numbers the machines in
    an order of its own (by address, then process id), so the ranks are numbered again by the
    gang's node rank (TRAINYARD_NODE_RANK, set by the supervising task): global rank 0, the one
    that reports, is on the leader, which claimed the job and records its end. Any numbering is
    valid for the process group because every rank is a client of torchrun's agent store."""
    node = os.environ.get("TRAINYARD_NODE_RANK")
    if node is None:
        return int(os.environ["RANK"])
    rank = int(node) * int(os.environ["LOCAL_WORLD_SIZE"]) + int(os.environ["LOCAL_RANK"])
    if rank != int(os.environ["RANK"]) and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        raise RuntimeError("the ranks of a multi-node job need torchrun's shared agent store "
                           "(TORCH_DISABLE_SHARE_RDZV_TCP_STORE must not be 1)")
    os.environ["RANK"] = str(rank)  # what torch.distributed's env:// initialisation reads
    return rank


def main(spec_path: str) -> int:
    die_with_parent()
    cfg = json.loads(Path(spec_path).read_text())
    run_dir = Path(spec_path).parent
    rank = global_rank()
    (run_dir / f"rank-{rank}.pid").write_text(str(os.getpid()))
    try:
        if rank == 0:
            outcome = _rank0(cfg)
            tmp = run_dir / ".result.json.tmp"
            tmp.write_text(json.dumps(outcome))
            os.replace(tmp, run_dir / "result.json")
        else:
            _other_rank(cfg)
    except BaseException as exc:  # noqa: BLE001 - the supervising task reads the reason from the file
        (run_dir / f"rank-{rank}.error").write_text(json.dumps({
            "rank": rank, "error": f"{type(exc).__name__}: {exc}"[:2000], "peer_lost": peer_lost(exc),
            "traceback": traceback.format_exc()[-5000:]}))
        return 1
    return 0


def _spec(cfg: dict):
    from workers.training import TrainSpec

    return TrainSpec(cfg["architecture"], cfg["model_config"], cfg["train_config"], dataset_dir=cfg["dataset_dir"],
                     output_dir=cfg["output_dir"], extra=cfg.get("extra") or {})


def _runner(cfg: dict):
    """The zoo's loop, or for a Hugging Face job the Trainer runner (the Trainer does DDP itself)."""
    if cfg.get("is_hf"):
        from workers.hf.runner import run
    else:
        from workers.training import run
    return run


def _other_rank(cfg: dict) -> None:
    from workers.training import Control
    from workers.training.distributed import Dist

    # SIGTERM (the worker shutting down, torchrun closing) reaches every rank: only rank 0
    # decides, and the others stop with it at the same step.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    dist = Dist.from_env(cfg["timeout"])
    _runner(cfg)(_spec(cfg), [], Control(), dist)
    dist.close()  # only after a clean end: after a lost peer the process just exits


def _rank0(cfg: dict) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    from types import SimpleNamespace

    from workers.adapters.logcapture import captured_output
    from workers.adapters.reporter import Reporter
    from workers.adapters.fence import fenced_move
    from workers.training.artifacts import Fenced, fenced_by
    from workers.training.distributed import Dist

    start = SimpleNamespace(job_id=cfg["job_id"], token=cfg["token"])
    reporter = Reporter(cfg["job_id"], token=cfg["token"]).start()
    signal.signal(signal.SIGTERM, lambda signum, frame: reporter.request_requeue())
    dist = None
    out = {"status": None, "fenced": False}
    try:
        dist = Dist.from_env(cfg["timeout"])
        with captured_output(lambda data: reporter.emit("log", data)), \
                fenced_by(str(cfg["token"]), lambda moves: fenced_move(start, moves)):
            result = _runner(cfg)(_spec(cfg), [reporter], reporter.control, dist)
        out.update(status=result.status, metrics=result.metrics, artifacts=result.artifacts,
                   test_metrics=result.test_metrics, warnings=result.warnings)
    except Fenced:
        out["fenced"] = True
    except BaseException as exc:
        reporter.emit("log", {"level": "error", "text": traceback.format_exc()[-5000:]})
        raise
    finally:
        reporter.close()
    out["fenced"] = out["fenced"] or reporter.fenced
    if dist is not None and not out["fenced"]:  # a fenced rank 0 may leave the others mid-step
        dist.close()
    out["stop_reason"] = reporter.control.stop_reason
    return out


if __name__ == "__main__":
    code = main(sys.argv[1])
    sys.stdout.flush(), sys.stderr.flush()
    # Everything this rank owes is on disk (result, checkpoints) and its connections are closed:
    # skip the interpreter's teardown of torch, which takes seconds on a loaded machine, so a
    # cancelled job's processes are gone at once.
    os._exit(code)
