"""Disk full while writing a checkpoint: a clear error, no partial file, the previous one intact."""

from __future__ import annotations

import errno

import pytest
import torch

from workers.training import checkpoint
from workers.training.checkpoint import CheckpointError, Checkpointer


def test_enospc_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ck = Checkpointer(tmp_path / "checkpoints")
    first = ck.save({"w": torch.ones(3), "epoch": 1}, 1)
    before = first.read_bytes()
    real_save = torch.save

    def full_disk(obj, f):
        real_save(obj, f)  # some bytes reach the temp file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(CheckpointError) as info:
        ck.save({"w": torch.zeros(3), "epoch": 2}, 2)
    msg = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert "disk full while writing checkpoint ckpt-000002.pt" in msg and "ckpt-000001.pt is intact" in msg
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["ckpt-000001.pt"]  # no temp left
    assert first.read_bytes() == before
    monkeypatch.undo()
    state = ck.load_latest("cpu")
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))


def test_other_errors_pass_through(tmp_path, monkeypatch):
    def denied(obj, f):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint.torch, "save", denied)
    with pytest.raises(PermissionError):
        Checkpointer(tmp_path).save({}, 1)
    assert list(tmp_path.iterdir()) == []


def test_training_run_stops_with_the_message_and_resumes_from_the_kept_checkpoint(tmp_path, monkeypatch):
    from tests.workers.test_training_loop import make_classification, make_spec
    from workers.training import run

    ds = make_classification(tmp_path)
    out = tmp_path / "job"
    real_save, calls = torch.save, []

    def full_after_first(obj, f):
        calls.append(1)
        if len(calls) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(checkpoint.torch, "save", full_after_first)
    with pytest.raises(CheckpointError, match="disk full while writing checkpoint ckpt-000002.pt"):
        run(make_spec(ds, out, epochs=3))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt-000001.pt"]
    monkeypatch.undo()
    result = run(make_spec(ds, out, epochs=3))  # space freed: the restart resumes after epoch 1
    assert result.status == "succeeded"
