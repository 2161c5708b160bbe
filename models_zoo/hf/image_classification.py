"""Fine-tune a pretrained vision model (ViT, ConvNeXt, ResNet...) for image classification:
AutoModelForImageClassification + its image processor, on an image dataset's cached pixels."""

from __future__ import annotations

from dataclasses import dataclass

from models_zoo.hf import MODEL_HELP, build, common_errors  # noqa: F401 - build is the registry's contract
from models_zoo.schema import param

KINDS = ("image",)
LABEL = "Hugging Face image classifier"


@dataclass(frozen=True)
class Config:
    model: str = param("google/vit-base-patch16-224", label="Pretrained model", kind="str", help=MODEL_HELP)
    freeze_encoder: bool = param(False, label="Freeze the encoder", help="train the classification head only")


def validate_for(config: Config, info: dict) -> dict[str, str]:
    return common_errors(config, info, KINDS, LABEL)
