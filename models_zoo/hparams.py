"""Training hyperparameters shared by the web form and the training runtime (no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from models_zoo.schema import param

OPTIMIZERS = [
    ("sgd", "SGD"),
    ("sgd_momentum", "SGD + momentum"),
    ("adam", "Adam"),
    ("adamw", "AdamW"),
    ("rmsprop", "RMSprop"),
]
SCHEDULES = [("constant", "Constant"), ("step", "Step decay"), ("cosine", "Cosine"), ("onecycle", "One-cycle")]
MONITORS = [("auto", "Auto (accuracy / loss)"), ("loss", "Validation loss"), ("accuracy", "Validation accuracy"),
            ("f1", "Validation macro F1"), ("r2", "Validation R²"), ("mae", "Validation MAE")]
# Which metrics each task reports, and whether higher is better.
TASK_METRICS = {
    "classification": {"loss": "min", "accuracy": "max", "f1": "max"},
    "regression": {"loss": "min", "r2": "max", "mae": "min"},
    "lm": {"loss": "min"},
}

AUGMENTS = [
    ("auto", "Auto: random crop and horizontal flip for colour images, none for grayscale"),
    ("off", "Off"),
    ("crop", "Random crop"),
    ("crop_flip", "Random crop + horizontal flip"),
    ("flip", "Horizontal flip"),
]
COMPILE = [("off", "Off (eager)"), ("on", "On")]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = param(20, label="Epochs", min=1, max=10_000)
    batch_size: int = param(64, label="Batch size", min=1, max=65_536)
    learning_rate: float = param(1e-3, label="Learning rate", min=1e-7, max=10.0)
    optimizer: str = param("adam", label="Optimizer", choices=OPTIMIZERS)
    momentum: float = param(0.9, label="Momentum", min=0.0, max=0.999, help="SGD + momentum and RMSprop",
                     applies_when={"optimizer": ("sgd_momentum", "rmsprop")})
    nesterov: bool = param(False, label="Nesterov momentum", help="SGD + momentum only",
                      applies_when={"optimizer": ("sgd_momentum",)})
    weight_decay: float = param(0.0, label="Weight decay", min=0.0, max=1.0)
    lr_schedule: str = param("constant", label="LR schedule", choices=SCHEDULES)
    step_epochs: int = param(10, label="Step decay every (epochs)", min=1, max=10_000,
                           applies_when={"lr_schedule": ("step",)})
    step_gamma: float = param(0.1, label="Step decay factor", min=0.0001, max=1.0,
                              applies_when={"lr_schedule": ("step",)})
    warmup_epochs: float = param(0.0, label="Linear warm-up (epochs)", min=0.0, max=1000.0,
                                  applies_when={"lr_schedule": ("constant", "step", "cosine")})
    grad_clip: float = param(0.0, label="Gradient clipping (max norm, 0 = off)", min=0.0, max=1e6)
    label_smoothing: float = param(0.0, label="Label smoothing", min=0.0, max=0.5, help="classification",
                                    applies_when={"task": ("classification",)})
    regression_loss: str = param("mse", label="Regression loss", choices=[("mse", "MSE"), ("mae", "MAE")],
                                applies_when={"task": ("regression",)})
    early_stopping_patience: int = param(0, label="Early stopping patience (epochs, 0 = off)", min=0, max=10_000)
    monitor: str = param("auto", label="Metric for early stopping / best model", choices=MONITORS)
    keep: str = param("last", label="Final model", choices=[("last", "Last epoch"), ("best", "Best epoch")])
    mixed_precision: str = param("auto", label="Mixed precision", choices=[("auto", "bf16 on CUDA"), ("off", "Off")],
                                 applies_when={"cuda": (True,)})
    seed: int = param(0, label="Seed", min=0, max=2**31 - 1)
    # Image jobs: augmentation of the training batches on the device (workers/training/augment.py).
    augment: str = param("auto", label="Image augmentation", choices=AUGMENTS,
                         help="image jobs; training batches only, never validation or test",
                         applies_when={"kind": ("image",)})
    crop_padding: int = param(0, label="Random-crop padding (px, 0 = auto: 1/8 of the side)", min=0, max=64,
                              help="image jobs with random crop",
                              applies_when={"kind": ("image",), "augment": ("auto", "crop", "crop_flip")})
    cutout: int = param(0, label="Cutout square (px, 0 = off)", min=0, max=1024, help="image jobs",
                        applies_when={"kind": ("image",)})
    mixup_alpha: float = param(0.0, label="Mixup α (0 = off)", min=0.0, max=10.0,
                               help="image classification; 0.2–0.4 is usual",
                               applies_when={"kind": ("image",), "task": ("classification",)})
    compile: str = param("off", label="torch.compile", choices=COMPILE,
                         help="compiles the model before the first step; falls back to eager if it fails")
    # Data-parallel training (torch.distributed, workers/training/distributed.py): devices of one
    # worker, all reserved at once. On a CPU worker each "device" is a gloo process.
    gpus: int = param(1, label="Devices (GPUs on one machine)", min=1, max=64,
                      help="more than 1: data-parallel training (DDP) over that many GPUs of one worker, "
                           "or CPU processes on a CPU worker; the batch size is the global batch")
    # Multi-node: that many devices on each of `nodes` machines (distinct worker hosts), one c10d
    # rendezvous at the first (workers/adapters/ddp.py).
    nodes: int = param(1, label="Machines (nodes)", min=1, max=32,
                       help="more than 1: the job runs on that many machines at once, each with the devices "
                            "above (gpus × nodes ranks in all); the batch is split over all of them")

    def check(self) -> dict[str, str]:
        if self.lr_schedule == "onecycle" and self.warmup_epochs:
            return {"warmup_epochs": "one-cycle has its own warm-up; set this to 0"}
        if self.batch_size < (ranks := self.gpus * self.nodes):
            over = f"{self.gpus} devices" if self.nodes == 1 else f"{ranks} ranks ({self.gpus} × {self.nodes} machines)"
            return {"batch_size": f"the batch is split over the {over}: give at least {ranks}"}
        return {}

    def check_for_kind(self, kind: str, task: str) -> dict[str, str]:
        """Augmentation belongs to image jobs (mixup to image classification): refused elsewhere
        rather than silently ignored."""
        errors = {}
        if kind != "image":
            if self.augment not in ("auto", "off"):
                errors["augment"] = f"augmentation applies to image datasets; this one holds {kind} data"
            for name in ("crop_padding", "cutout", "mixup_alpha"):
                if getattr(self, name):
                    errors[name] = f"applies to image datasets; this one holds {kind} data"
        elif self.mixup_alpha and task != "classification":
            errors["mixup_alpha"] = "mixup mixes class labels: image classification only"
        return errors

    def monitored(self, task: str) -> tuple[str, str]:
        """The metric that picks the best epoch for `task`, and "max" or "min"."""
        metrics = TASK_METRICS[task]
        name = self.monitor
        if name == "auto":
            name = "accuracy" if task == "classification" else "loss"
        return name, metrics[name]

    def check_for_task(self, task: str) -> dict[str, str]:
        name = "accuracy" if self.monitor == "auto" and task == "classification" else self.monitor
        if name not in ("auto", *TASK_METRICS[task]):
            allowed = ", ".join(TASK_METRICS[task])
            return {"monitor": f"{name} is not reported for {task}; choose auto or one of {allowed}"}
        return {}
