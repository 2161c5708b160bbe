"""The zoo loop and Hugging Face fine-tuning report the same metrics for the same predictions
(the Compare page shows them side by side as one number)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import EvalPrediction  # noqa: E402

from workers.hf import runner  # noqa: E402
from workers.training import loop  # noqa: E402
from workers.training.callbacks import TrainState  # noqa: E402


def _logits_for(pred, k):
    """Logits whose argmax is `pred` (with varied confidence)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(len(pred), k, generator=g)
    margin = torch.rand(len(pred), generator=g) + 0.1
    logits[torch.arange(len(pred)), torch.as_tensor(pred)] = logits.max(1).values + margin
    return logits


def zoo_metrics(logits, y) -> dict:
    """What the zoo loop's evaluation reports (workers/training/loop.py: evaluate)."""
    return loop.classification_metrics(logits, y)


def hf_metrics(logits, y, loss: float) -> tuple[dict, list]:
    """What the HF runtime reports: the Trainer calls compute_metrics, prefixes "eval_" and adds
    its own loss; the runner turns that into the reported values (and keeps the confusion aside)."""
    compute = runner.ClassificationMetrics(logits.shape[1])
    values = compute(EvalPrediction(predictions=logits.numpy(), label_ids=y.numpy()))
    trainer_metrics = {f"eval_{k}": v for k, v in values.items()} | {"eval_loss": loss, "eval_runtime": 0.1}
    return runner.reported_metrics(trainer_metrics, "text_classification"), compute.confusion


CASES = {
    # Three classes, 50 / 12 / 6 in the truth; class 0 is predicted too often.
    "all classes present": ([0] * 50 + [1] * 12 + [2] * 6,
                            [0] * 44 + [1] * 4 + [2] * 2 + [1] * 7 + [0] * 5 + [2] * 2 + [0] * 3 + [1] * 1, 3),
    # A rare fourth class that the validation split lacks and nothing predicts.
    "one absent class": ([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], 4),
    # A class predicted but never true.
    "a class only predicted": ([0, 0, 1, 1, 1], [0, 2, 1, 1, 0], 3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_both_runtimes_report_the_same_classification_metrics(case):
    from sklearn.metrics import precision_recall_fscore_support

    truth, pred, k = CASES[case]
    logits, y = _logits_for(pred, k), torch.tensor(truth)
    zoo = zoo_metrics(logits, y)
    hf, hf_confusion = hf_metrics(logits, y, zoo["loss"])

    assert hf == {key: zoo[key] for key in ("loss", "accuracy", "precision", "recall", "f1")}
    assert hf_confusion == zoo["confusion"]
    # ...and both are scikit-learn's macro averages (over the classes in truth or predictions).
    p, r, f1, _ = precision_recall_fscore_support(truth, pred, average="macro", zero_division=0)
    assert (hf["precision"], hf["recall"], hf["f1"]) == pytest.approx((p, r, f1))


def test_an_absent_class_does_not_lower_the_macro_average():
    truth, pred, k = CASES["one absent class"]
    logits, y = _logits_for(pred, k), torch.tensor(truth)
    zoo = zoo_metrics(logits, y)
    hf, _ = hf_metrics(logits, y, zoo["loss"])
    present = _logits_for(pred, 3)  # the same predictions, the absent class not in the model
    assert hf["f1"] == zoo["f1"] == pytest.approx(zoo_metrics(present, y)["f1"])


@pytest.mark.parametrize("loss", [0.0, 2.5, 80.0])
def test_both_runtimes_report_the_same_perplexity(loss):
    hf_val = runner.reported_metrics({"eval_loss": loss}, "causal_lm")
    n = 10
    zoo_train = loop._train_values("lm", torch.tensor(loss * n), torch.tensor(0), n, TrainState(), 0.0)
    assert hf_val["perplexity"] == zoo_train["perplexity"]
    assert zoo_train["perplexity"] == pytest.approx(math.exp(min(loss, 50.0)))
