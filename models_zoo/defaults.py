"""Adaptive training defaults: what a zoo job gets for the training settings it leaves unset.

`adaptive_defaults(architecture, model_config, dataset_info)` is a pure, torch-free function
returning {setting: (value, reason)}; `submit_job` applies it to the settings absent from the
request only (an explicit value always wins) and stores the resolved values on the job, and the
new-job form shows each value with its reason. The rules are few and general, not tuned per
benchmark:

* **Batch size**: 64; a power of two near a fiftieth of the training rows when that is smaller
  (at least 16), so a small table still gets a few dozen steps per epoch.
* **Epochs** from a budget of optimizer steps: `STEP_BUDGET` steps over the run at the batch
  size above, i.e. `ceil(STEP_BUDGET / steps per epoch)`, clamped to [`MIN_EPOCHS`,
  `MAX_EPOCHS`]. A fixed epoch count under-trains small datasets (a few dozen steps an epoch)
  and wastes time on large ones.
* **Optimizer and schedule**: AdamW with a modest decoupled weight decay (`WEIGHT_DECAY`), a
  cosine decay to zero after a linear warm-up over the first `WARMUP_FRACTION` of the run.
  The decay lets a longer run settle instead of bouncing at a constant rate.
* **The final model is the epoch with the lowest validation loss** (`keep="best"`,
  `monitor="loss"`): the early-stopping estimate. A budget of steps means many passes over a
  small dataset, and a network with thousands of weights per training row fits its noise long
  before the last epoch (on a 455-row table the last epoch scored 4 points under the best one);
  choosing by the loss, a smooth proper score, rather than by accuracy, which moves in steps of
  one validation row, keeps the choice itself from fitting the validation set's noise. On a
  large dataset the lowest loss is usually near the end, so this costs nothing there. The test
  split, when there is one, plays no part in it (it is scored once, on the model kept).
* **Recurrent and attention networks** (RNN/LSTM/GRU, Transformer, GPT): gradient clipping at
  norm 1.0; recurrent nets also a higher peak rate (`RECURRENT_LR`), which clipping and the
  cosine decay make safe and which their slow start on long sequences needs.

Hugging Face architectures are not handled here: they have per-method fine-tuning defaults
(`models_zoo.hf.with_fine_tune_defaults`), and this returns {} for them.
"""

from __future__ import annotations

import math

STEP_BUDGET = 6000
MIN_EPOCHS, MAX_EPOCHS = 10, 200
BASE_BATCH, MIN_BATCH = 64, 16
BASE_LR, RECURRENT_LR = 1e-3, 3e-3
WEIGHT_DECAY = 0.01
WARMUP_FRACTION = 0.05
CLIPPED = ("rnn", "transformer", "gpt")
RECURRENT = ("rnn",)

RULE = (f"unset training settings adapt to the dataset: epochs from a budget of about {STEP_BUDGET:,} "
        f"optimizer steps ({MIN_EPOCHS}–{MAX_EPOCHS} epochs), batch size {BASE_BATCH} (smaller for small "
        f"datasets), AdamW with weight decay {WEIGHT_DECAY}, cosine decay after a {WARMUP_FRACTION:.0%} "
        f"warm-up, the final model the epoch with the lowest validation loss; recurrent, attention and "
        f"GPT models clip gradients at 1.0")


def _rows(info: dict) -> int:
    for key in ("num_train", "num_rows"):
        if info.get(key):
            return int(info[key])
    return 0


def _pow2_floor(x: float) -> int:
    return 1 << max(0, int(math.floor(math.log2(max(1.0, x)))))


def adaptive_defaults(architecture: str, model_config: dict | None, dataset_info: dict | None) -> dict:
    """{setting: (value, reason)} for every TrainConfig setting these rules decide, for a job of
    `architecture` with `model_config` (raw or clean) on the dataset `dataset_info` describes
    (its info.json). Settings the rules leave alone keep TrainConfig's defaults."""
    if architecture.startswith("hf_"):
        return {}
    info = dataset_info or {}
    model_config = model_config or {}
    out: dict = {}
    lm = info.get("task") == "lm" or info.get("kind") == "corpus"
    if lm:
        try:
            block = int(model_config.get("block_size") or 64)
        except (TypeError, ValueError):
            block = 64
        tokens = int(info.get("num_train_tokens") or 0)
        batch = BASE_BATCH
        steps = max(1, (tokens - 1) // (batch * block)) if tokens else 0
        out["batch_size"] = (batch, f"{batch} windows of {block} tokens")
        size = f"{tokens:,} training tokens"
    else:
        rows = _rows(info)
        batch = BASE_BATCH
        if rows and rows / 50 < BASE_BATCH:
            batch = max(MIN_BATCH, _pow2_floor(rows / 50))
            out["batch_size"] = (batch, f"{rows:,} training rows: a small batch gives more steps per epoch")
        else:
            out["batch_size"] = (batch, "the usual mini-batch")
        steps = max(1, math.ceil(rows / batch)) if rows else 0
        size = f"{rows:,} training rows"
    if steps:
        epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(STEP_BUDGET / steps)))
        out["epochs"] = (epochs, f"{size}, {steps:,} steps per epoch: about {STEP_BUDGET:,} steps in all "
                                 f"({MIN_EPOCHS}–{MAX_EPOCHS} epochs)")
    else:
        epochs = 20
        out["epochs"] = (epochs, "dataset size unknown")
    out["optimizer"] = ("adamw", "AdamW: Adam with decoupled weight decay")
    out["weight_decay"] = (WEIGHT_DECAY, "a modest decoupled weight decay")
    out["lr_schedule"] = ("cosine", "cosine decay to zero over the run")
    warm = round(max(WARMUP_FRACTION * epochs, 1 / max(1, steps) if steps else 0), 3)
    out["warmup_epochs"] = (warm, f"a short linear warm-up: the first {WARMUP_FRACTION:.0%} of the run")
    passes = f"{epochs} passes over the data" if steps else "the run"
    out["keep"] = ("best", f"{passes}: the final model is the epoch with the lowest validation loss "
                           f"(early stopping's estimate), not the last")
    out["monitor"] = ("loss", "validation loss picks the best epoch: a smooth score, unlike accuracy's steps "
                              "of one row")
    if architecture in RECURRENT:
        out["learning_rate"] = (RECURRENT_LR, "recurrent net: higher peak rate, made safe by clipping and the decay")
    else:
        out["learning_rate"] = (BASE_LR, "Adam's usual rate")
    if architecture in CLIPPED:
        out["grad_clip"] = (1.0, "recurrent / attention model: clip the gradient norm at 1.0")
    return out


def resolve(architecture: str, model_config: dict | None, dataset_info: dict | None,
            train_config: dict | None) -> tuple[dict, dict]:
    """(`train_config` with the adaptive defaults for the keys it lacks, {setting: reason} of
    the ones filled in). Explicit values always win."""
    given = dict(train_config or {})
    filled = {k: v for k, v in adaptive_defaults(architecture, model_config, dataset_info).items() if k not in given}
    if "keep" in filled and "monitor" in given:  # the user's metric picks the best epoch
        filled["keep"] = ("best", f"the final model is the epoch with the best validation {given['monitor']} "
                                  f"(the metric chosen), not the last")
    return {**{k: v for k, (v, _) in filled.items()}, **given}, {k: r for k, (_, r) in filled.items()}
