"""The loop's own policies as callbacks: keep-best and early stopping, and their state across a restart."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from workers.training.callbacks import Control, EarlyStopping, KeepBest, TrainState  # noqa: E402


def _evals(cb, values, state, control, key="loss"):
    for epoch, v in enumerate(values, start=state.epoch + 1):
        state.epoch = epoch
        cb.on_eval(state, control, {key: v})


def test_early_stopping_finishes_after_patience_evaluations_without_improvement():
    state, control = TrainState(epochs=10), Control()
    early = EarlyStopping("loss", "min", patience=2)
    _evals(early, [1.0, 0.8, 0.9], state, control)
    assert not control.finish and early.bad_epochs == 1
    _evals(early, [0.85], state, control)
    assert control.finish and not control.should_stop  # finishing is not a cancel
    assert "has not improved for 2 epochs (best 0.8)" in early.message


def test_early_stopping_does_not_finish_on_the_last_epoch_nor_with_patience_zero():
    state, control = TrainState(epochs=3), Control()
    _evals(EarlyStopping("accuracy", "max", patience=2), [0.9, 0.5, 0.5], state, control, key="accuracy")
    assert not control.finish  # the run ends there anyway
    state, control = TrainState(epochs=10), Control()
    _evals(EarlyStopping("loss", "min", patience=0), [1.0] + [2.0] * 8, state, control)
    assert not control.finish


def test_the_policies_carry_their_state_through_a_checkpoint():
    model = torch.nn.Linear(2, 1)
    state, control = TrainState(epochs=10), Control()
    best, early = KeepBest("loss", "min", model), EarlyStopping("loss", "min", patience=3)
    for epoch, loss in enumerate([1.0, 0.5, 0.7, 0.8], start=1):
        state.epoch = epoch
        if loss == 0.5:
            with torch.no_grad():
                model.weight.fill_(5.0)
        else:
            with torch.no_grad():
                model.weight.fill_(float(epoch))
        for cb in (best, early):
            cb.on_eval(state, control, {"loss": loss})
    assert state.best_metric == 0.5 and best.best_metrics == {"loss": 0.5}
    assert torch.equal(best.best_weights["weight"], torch.full((1, 2), 5.0))
    ckpt = {"best_metric": state.best_metric, **best.state_dict(), **early.state_dict()}

    # A restarted run: fresh callbacks loaded from the checkpoint go on where these stopped.
    best2, early2 = KeepBest("loss", "min", torch.nn.Linear(2, 1)), EarlyStopping("loss", "min", patience=3)
    best2.load_state_dict(ckpt, torch.device("cpu"))
    early2.load_state_dict(ckpt, torch.device("cpu"))
    state2, control2 = TrainState(epochs=10, epoch=4, best_metric=ckpt["best_metric"]), Control()
    assert early2.bad_epochs == 2 and best2.best_metrics == {"loss": 0.5}
    assert torch.equal(best2.best_weights["weight"], torch.full((1, 2), 5.0))
    _evals(early2, [0.6], state2, control2)
    assert control2.finish  # the third epoch without improvement, counted across the restart


def test_keep_best_without_a_model_tracks_the_metric_only():
    state, control = TrainState(epochs=5), Control()
    best = KeepBest("accuracy", "max")
    _evals(best, [0.6, 0.9, 0.7], state, control, key="accuracy")
    assert state.best_metric == 0.9 and best.best_weights is None and "best_model" not in best.state_dict()
