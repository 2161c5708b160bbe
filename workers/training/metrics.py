"""Validation metrics, one implementation for both runtimes (the zoo loop and Hugging Face
fine-tuning): the Compare page shows their numbers side by side, so they must mean the same."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# exp() of a diverged loss overflows; the perplexity is capped at exp(50) instead of inf.
MAX_LOG_PERPLEXITY = 50.0


def perplexity(loss: float) -> float:
    """exp(mean token cross-entropy), capped (see MAX_LOG_PERPLEXITY)."""
    return math.exp(min(loss, MAX_LOG_PERPLEXITY))


def classification_metrics(logits: torch.Tensor, y: torch.Tensor, num_classes: int | None = None) -> dict:
    """Loss, accuracy, macro precision / recall / F1 and the confusion matrix (rows: truth,
    columns: prediction) of logits [N, K] against class indices [N].

    As scikit-learn's `average="macro"` (zero_division=0): the mean over the classes that occur in
    the truth or the predictions; a class absent from both (a rare class missing from the
    validation split) neither counts as 0 nor lowers the mean.
    """
    k = num_classes or logits.shape[1]
    pred = logits.argmax(1)
    confusion = torch.bincount(y * k + pred, minlength=k * k).reshape(k, k).cpu()
    tp = confusion.diag().double()
    predicted, true = confusion.sum(0), confusion.sum(1)
    precision = tp / predicted.clamp(min=1)
    recall = tp / true.clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    present = (predicted + true) > 0
    return {
        "loss": F.cross_entropy(logits, y).item(),
        "accuracy": (tp.sum() / max(1, len(y))).item(),
        "precision": precision[present].mean().item(),
        "recall": recall[present].mean().item(),
        "f1": f1[present].mean().item(),
        "confusion": confusion.tolist(),
    }


def regression_metrics(out: torch.Tensor, y: torch.Tensor, norm: dict) -> dict:
    """Loss (MSE on standardised targets), and MSE, MAE, R² in the target's own units."""
    pred = out.squeeze(-1) * norm["std"] + norm["mean"]
    truth = y * norm["std"] + norm["mean"]
    mse = F.mse_loss(pred, truth)
    var = ((truth - truth.mean()) ** 2).mean().clamp(min=1e-12)
    return {
        "loss": F.mse_loss(out.squeeze(-1), y).item(),
        "mse": mse.item(),
        "mae": (pred - truth).abs().mean().item(),
        "r2": (1 - mse / var).item(),
    }


def collapse_warnings(pred=None, classes=None, y_true=None, train_losses=()) -> list[dict]:
    """What a finished run must not leave silent, as [{"code", "text"}]: a classifier whose
    validation predictions are all one class (while the truth has several), a training loss that
    never fell below its first value (at least three points). Both runtimes call this."""
    out = []
    if pred is not None and len(pred) > 1:
        predicted = {int(p) for p in pred}
        truth = {int(t) for t in y_true} if y_true is not None else {None, -1}
        if len(predicted) == 1 and len(truth) > 1:
            k = predicted.pop()
            name = classes[k] if classes is not None and k < len(classes) else k
            out.append({"code": "one_class", "text": f"every validation prediction is class {name!r} "
                        f"({len(pred)} rows): the classifier collapsed to one class; try a lower learning rate, "
                        "more epochs, or check the labels and the class balance"})
    losses = [float(v) for v in train_losses if math.isfinite(float(v))]
    if len(losses) >= 3 and min(losses[1:]) >= losses[0] - 0.01 * max(abs(losses[0]), 1e-6):
        out.append({"code": "loss_flat", "text": f"the training loss never fell below its start value "
                    f"{losses[0]:.4g} ({len(losses)} points): the model did not learn; check the learning rate "
                    "(too high diverges, too low stalls) and the data"})
    return out

