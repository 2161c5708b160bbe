"""ResNet-18/34 from torchvision, adapted to small and single-channel images.

- `small_input` replaces the 7×7 stride-2 stem and its max-pool with a 3×3 stride-1 conv (the usual
  CIFAR adaptation): the network then downsamples 8× instead of 32×. "auto" turns it on for images
  smaller than 64 pixels on a side.
- Images with other than 3 channels get a first conv with that many input channels.
- Weights are never downloaded. `pretrained_path` names a torchvision ResNet state dict already on
  the worker's disk (e.g. the `resnet18-*.pth` file torchvision caches); it is read with
  `torch.load(path, weights_only=True)`, so it cannot run code. The classifier (`fc`) is always
  new; the first conv is loaded when its shape fits, summed over RGB for 1-channel images, and
  left freshly initialised otherwise (the small-input stem is 3×3, the file's is 7×7). A file
  that is not a state dict of the chosen depth is an error.
- A model rebuilt from its own exported weights (`models_zoo.loading.load_model`) does not read the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models_zoo._checks import kind_error
from models_zoo.schema import ConfigError, param

KINDS = ("image",)
DEPTHS = [("18", "ResNet-18"), ("34", "ResNet-34")]
SMALL_INPUT = [("auto", "Auto (on below 64×64)"), ("on", "On"), ("off", "Off")]
SMALL_BELOW = 64
STANDARD_MIN_SIZE = 32  # the standard stem downsamples 32×


@dataclass(frozen=True)
class Config:
    depth: str = param("18", label="Depth", choices=DEPTHS)
    small_input: str = param("auto", label="Small-image stem", choices=SMALL_INPUT,
                             help="3×3 stride-1 first conv and no max-pool")
    pretrained_path: str = param("", label="Pretrained weights file (on the worker)",
                                 help="optional path to a local torchvision state dict (.pth); "
                                      "nothing is ever downloaded")

    def check(self) -> dict[str, str]:
        if len(self.pretrained_path) > 1024:
            return {"pretrained_path": "at most 1024 characters"}
        return {}


def uses_small_stem(config: Config, info: dict) -> bool:
    if config.small_input == "auto":
        _c, h, w = (int(d) for d in info["input_shape"])
        return min(h, w) < SMALL_BELOW
    return config.small_input == "on"


def validate_for(config: Config, info: dict) -> dict[str, str]:
    """Errors (field -> message) for this config on a dataset described by `info`; empty when fine."""
    errors = kind_error(info, KINDS, "ResNet")
    if errors:
        return errors
    errors.update(config.check())
    _c, h, w = (int(d) for d in info["input_shape"])
    if not uses_small_stem(config, info) and min(h, w) < STANDARD_MIN_SIZE:
        errors["small_input"] = (f"the standard stem needs images of at least {STANDARD_MIN_SIZE}×{STANDARD_MIN_SIZE}; "
                                 f"this dataset's are {h}×{w} (use the small-image stem)")
    path = config.pretrained_path.strip()
    if path and "pretrained_path" not in errors and not Path(path).is_file():
        errors["pretrained_path"] = _missing(path)
    return errors


def _missing(path: str) -> str:
    return (f"no file at {path!r}; weights are never downloaded, put a torchvision ResNet state dict "
            "there (in the shared data directory when workers run on other machines)")


def build(config: Config, info: dict):
    import torchvision
    from torch import nn

    c = int(info["input_shape"][0])
    factory = {"18": torchvision.models.resnet18, "34": torchvision.models.resnet34}[config.depth]
    model = factory(weights=None, num_classes=int(info["num_outputs"]))
    if uses_small_stem(config, info):
        model.conv1 = nn.Conv2d(c, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif c != 3:
        model.conv1 = nn.Conv2d(c, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if config.pretrained_path.strip():
        load_pretrained(model, config.pretrained_path.strip(), config.depth)
    return model


def load_pretrained(model, path: str, depth: str = "18") -> list[str]:
    """Copy a torchvision ResNet state dict into `model` (all but `fc`); returns the keys skipped."""
    import torch

    if not Path(path).is_file():
        raise ConfigError({"pretrained_path": _missing(path)})
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same answer
        # Only the exception's type: its text can quote bytes of whatever file the path named.
        raise ConfigError({"pretrained_path": f"{path!r} is not a readable PyTorch state dict "
                                              f"({type(exc).__name__})"}) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError({"pretrained_path": f"{path!r} does not hold a state dict (a mapping of names to tensors)"})

    own = model.state_dict()
    wanted = {k: v for k, v in state.items() if not k.startswith("fc.")}
    skipped = [k for k in state if k.startswith("fc.")]
    conv = wanted.pop("conv1.weight", None)
    if conv is not None:
        target = own["conv1.weight"].shape
        if conv.shape == target:
            wanted["conv1.weight"] = conv
        elif conv.dim() == 4 and conv.shape[1] == 3 and target[1] == 1 and conv.shape[2:] == target[2:]:
            wanted["conv1.weight"] = conv.sum(dim=1, keepdim=True)  # grey = R + G + B
        else:
            skipped.append("conv1.weight")
    unexpected = sorted(set(wanted) - set(own))
    # torchvision's published files predate `num_batches_tracked`; those counters may be absent.
    missing = sorted(k for k in set(own) - set(wanted)
                     if not k.startswith("fc.") and k != "conv1.weight" and not k.endswith("num_batches_tracked"))
    mismatched = sorted(k for k in set(wanted) & set(own) if wanted[k].shape != own[k].shape)
    if unexpected or missing or mismatched:
        example = (unexpected or missing or mismatched)[:3]
        raise ConfigError({"pretrained_path": (
            f"{path!r} is not a torchvision ResNet-{depth} state dict "
            f"({len(unexpected)} unexpected, {len(missing)} missing, {len(mismatched)} mismatched tensors, "
            f"e.g. {', '.join(example)})")})
    model.load_state_dict(wanted, strict=False)
    return skipped
