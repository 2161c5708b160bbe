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
