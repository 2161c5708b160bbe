"""Convolutional network for images: a LeNet-5 style preset or a custom conv stack.

Input is a float NCHW batch, already normalised. The custom stack is `len(channels)` stages of
conv (same padding) → [batch norm] → ReLU → [2×2 pooling]; the feature map is then average-pooled
to at most 4×4, so the classifier's size does not grow with the image, and a hidden fully
connected layer (0 = none) leads to the outputs.

The LeNet preset is the usual modern reading of LeNet-5: conv 5×5 (6, padding 2) → ReLU →
max-pool → conv 5×5 (16) → ReLU → max-pool → 120 → 84 → outputs; it needs images of at least
12×12 and ignores every setting but dropout.
"""

from __future__ import annotations

from dataclasses import dataclass

from models_zoo._checks import kind_error, odd_kernel_error
from models_zoo.schema import param

KINDS = ("image",)
PRESETS = [("custom", "Custom conv stack"), ("lenet", "LeNet-5 (needs ≥ 12×12 images)")]
POOLING = [("max", "Max pooling"), ("avg", "Average pooling"), ("none", "None")]
LENET_MIN_SIZE = 12
CUSTOM = {"preset": ("custom",)}  # the settings LeNet-5 ignores (it has fixed layers)
POOLED_GRID = 4  # the feature map is average-pooled to at most this many cells per side


@dataclass(frozen=True)
class Config:
    preset: str = param("custom", label="Preset", choices=PRESETS,
                        help="LeNet-5 uses fixed layers: only dropout applies")
    channels: tuple = param((32, 64), label="Conv channels per stage", min=1, max=1024, max_items=6,
                            help="comma-separated, e.g. 32,64; each stage is followed by 2×2 pooling", applies_when=CUSTOM)
    kernel_size: int = param(3, label="Kernel size", min=1, max=11, help="odd", applies_when=CUSTOM)
    pooling: str = param("max", label="Pooling", choices=POOLING, applies_when=CUSTOM)
    batch_norm: bool = param(True, label="Batch norm", applies_when=CUSTOM)
    dropout: float = param(0.0, label="Dropout", min=0.0, max=0.9)
    hidden_size: int = param(128, label="Hidden FC size", min=0, max=8192, help="0 for none",
                              applies_when=CUSTOM)

    def check(self) -> dict[str, str]:
        if self.preset == "lenet":
            return {}
        errors = odd_kernel_error(self.kernel_size)
        if not self.channels:
            errors["channels"] = "give at least one stage, e.g. 32,64"
        return errors


def pooling_stages(config: Config) -> int:
    if config.preset == "lenet":
        return 2
    return 0 if config.pooling == "none" else len(config.channels)


def validate_for(config: Config, info: dict) -> dict[str, str]:
    """Errors (field -> message) for this config on a dataset described by `info`; empty when fine."""
    errors = kind_error(info, KINDS, "CNN")
    if errors:
        return errors
    errors.update(config.check())
    _c, h, w = (int(d) for d in info["input_shape"])
    if config.preset == "lenet":
        if min(h, w) < LENET_MIN_SIZE:
            errors["preset"] = (f"LeNet-5 needs images of at least {LENET_MIN_SIZE}×{LENET_MIN_SIZE}; "
                                f"this dataset's are {h}×{w} (use the custom preset)")
    elif not errors:
        stages = pooling_stages(config)
        need = 2**stages
        if min(h, w) < need:
            errors["channels"] = (f"{stages} pooling stages need images of at least {need}×{need}; this dataset's "
                                  f"are {h}×{w} (use fewer stages or no pooling)")
    return errors


def build(config: Config, info: dict):
    from torch import nn

    c, h, w = (int(d) for d in info["input_shape"])
    out = int(info["num_outputs"])

    def drop() -> list:
        return [nn.Dropout(config.dropout)] if config.dropout > 0 else []

    if config.preset == "lenet":
        # 5×5 padded conv keeps h; each pool halves; the unpadded 5×5 conv loses 4.
        h2, w2 = (h // 2 - 4) // 2, (w // 2 - 4) // 2
        return nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * h2 * w2, 120), nn.ReLU(), *drop(),
            nn.Linear(120, 84), nn.ReLU(), *drop(),
            nn.Linear(84, out),
        )

    pool = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}.get(config.pooling)
    layers: list = []
    width = c
    for ch in config.channels:
        layers.append(nn.Conv2d(width, ch, config.kernel_size, padding=config.kernel_size // 2,
                                bias=not config.batch_norm))
        if config.batch_norm:
            layers.append(nn.BatchNorm2d(ch))
        layers.append(nn.ReLU())
        if pool is not None:
            layers.append(pool(2))
            h, w = h // 2, w // 2
        width = ch
    gh, gw = min(h, POOLED_GRID), min(w, POOLED_GRID)
    layers += [nn.AdaptiveAvgPool2d((gh, gw)), nn.Flatten(), *drop()]
    features = width * gh * gw
    if config.hidden_size:
        layers += [nn.Linear(features, config.hidden_size), nn.ReLU(), *drop()]
        features = config.hidden_size
    layers.append(nn.Linear(features, out))
    return nn.Sequential(*layers)
