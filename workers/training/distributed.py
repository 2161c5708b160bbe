"""Data-parallel training on torch.distributed: what one rank of a multi-device job knows.

A job asking for N devices (TrainConfig.gpus) runs as N processes started by torchrun
(workers/adapters/ddp.py launches it; workers/adapters/ddp_rank.py is each rank's entry). Every
rank runs the same `workers.training.loop.run()` with a `Dist`: the model is wrapped in
DistributedDataParallel for the training steps, each global batch (the job's batch_size, the
same rows in the same order as one process would take) is split into per-rank slices, and the
train loss and correct counts are all-reduced before they are reported. Only rank 0 reports,
checkpoints and exports. Stop decisions (cancel, requeue, fenced, early stopping) and the
"report now" tick are made on rank 0 and broadcast, so every rank stops at the same step.

No Django here: the runtime stays runnable from the command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as tdist

from workers.training.callbacks import STOP_REASONS, Control

# One int64 broadcast from rank 0 carries the stop reason (its index + 1), early stopping and
# the "report now" tick.
_FINISH, _LOG = 1 << 4, 1 << 5


@dataclass
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, timeout_seconds: float = 60.0) -> Dist | None:
        """The process group torchrun set up for this process (RANK, WORLD_SIZE, LOCAL_RANK in
        the environment): NCCL on CUDA, gloo on the CPU. None outside torchrun or with one rank."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1 or "RANK" not in os.environ:
            return None
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
            backend = "nccl"
        else:
            device, backend = torch.device("cpu"), "gloo"
        if not tdist.is_initialized():
            tdist.init_process_group(backend, timeout=timedelta(seconds=timeout_seconds))
        return cls(rank, world, local_rank, device)

    def share_cpu_threads(self) -> int:
        """The ranks of one machine share its CPUs: each gets its part of the intra-op threads
        (at least one), so N gloo ranks on N cores do not spin-wait on each other."""
        local = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
        torch.set_num_threads(max(1, torch.get_num_threads() // max(1, local)))
        return torch.get_num_threads()

    def close(self) -> None:
        if tdist.is_initialized():
            tdist.destroy_process_group()

    # -- agreement ---------------------------------------------------------------------------
    def agree(self, live: Control | None, loop: Control, log_due: bool = False) -> bool:
        """Make `loop` (the control every rank's loop reads) what rank 0 decided: the stop
        reason from `live` (set by rank 0's reporter thread, at any moment), early stopping from
        `loop.finish`. Returns whether to report train metrics now. A collective: every rank
        calls it at the same step. The loop never reads `live` itself, or a stop set between
        two agreements would stop rank 0 one step before the others (and hang them)."""
        code = 0
        if self.is_main:
            reason = (live.stop_reason if live is not None else None) or loop.stop_reason
            code = (STOP_REASONS.index(reason) + 1 if reason else 0) | (_FINISH if loop.finish else 0) \
                | (_LOG if log_due else 0)
        t = torch.tensor([code], dtype=torch.int64, device=self.device)
        tdist.broadcast(t, src=0)
        code = int(t.item())  # a host sync, once per step, on the multi-device path only
        if code & 0xF:
            loop.request_stop(STOP_REASONS[(code & 0xF) - 1])
        loop.finish = bool(code & _FINISH)
        return bool(code & _LOG)

    def all_sum(self, *tensors: torch.Tensor) -> None:
        """Sum each tensor over the ranks, in place (one all-reduce: they are packed together)."""
        flat = torch.stack([t.detach().to(torch.float64).reshape(()) for t in tensors])
        tdist.all_reduce(flat)
        for t, v in zip(tensors, flat):
            t.copy_(v.to(t.dtype))

    def shard(self, n: int) -> slice:
        """This rank's rows of a global batch of `n` rows: contiguous, sizes differing by at most 1
        (what torch.tensor_split gives), so every row of the batch is used exactly once."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))
