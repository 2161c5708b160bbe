from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrainSpec:
    """Everything one training run needs, as plain data (built from a Job row by the task)."""

    architecture: str
    model_config: dict
    train_config: dict
    dataset_dir: str
    output_dir: str
    device: str = "auto"  # "auto" picks CUDA when present
    log_interval: float = 0.5  # seconds between train-metric reads (one host sync each)
    num_samples: int = 8
    # The bytes of dataset cache the run may hold in memory (None: half the machine's RAM); a
    # larger cache is read from its files per batch (workers/training/filecache.py).
    cache_memory_bytes: int | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    status: str  # "succeeded" | "cancelled"
    metrics: dict
    artifacts: list[str]  # file names under output_dir/artifacts
    epochs_completed: int = 0
    # The test split's metrics (evaluated once, on the exported model); empty without a test split.
    test_metrics: dict = field(default_factory=dict)
    # What the run flags about its model, [{"code", "text"}] (workers.training.metrics.collapse_warnings).
    warnings: list = field(default_factory=list)
