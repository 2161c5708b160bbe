"""Fine-tune a pretrained vision model (ViT, ConvNeXt, ResNet...) for image classification:
AutoModelForImageClassification + its image processor, on an image dataset's cached pixels."""

from __future__ import annotations

from dataclasses import dataclass

# build and upgrade are the registry's contract (upgrade: settings stored by earlier versions)
from models_zoo.hf import (MODEL_HELP, build, common_errors, method_fields_errors, method_params,  # noqa: F401
                           upgrade)
from models_zoo.schema import param

_FT = method_params()
KINDS = ("image",)
LABEL = "Hugging Face image classifier"


@dataclass(frozen=True)
class Config:
    model: str = param("google/vit-base-patch16-224", label="Pretrained model", kind="str", help=MODEL_HELP)
    method: str = _FT["method"]
    lora_rank: int = _FT["lora_rank"]
    lora_alpha: int = _FT["lora_alpha"]
    lora_dropout: float = _FT["lora_dropout"]
    lora_target_modules: str = _FT["lora_target_modules"]
    merge_adapter: bool = _FT["merge_adapter"]
    gradient_checkpointing: bool = _FT["gradient_checkpointing"]
    grad_accumulation: int = _FT["grad_accumulation"]

    def check(self) -> dict[str, str]:
        return method_fields_errors(self)


def validate_for(config: Config, info: dict) -> dict[str, str]:
    return common_errors(config, info, KINDS, LABEL)
