"""Fine-tune a pretrained encoder (BERT, MiniLM, RoBERTa...) for text classification:
AutoModelForSequenceClassification + its tokenizer, on a text dataset's raw texts."""

from __future__ import annotations

from dataclasses import dataclass

# build and upgrade are the registry's contract (upgrade: settings stored by earlier versions)
from models_zoo.hf import (MODEL_HELP, build, common_errors, method_fields_errors, method_params,  # noqa: F401
                           upgrade)
from models_zoo.schema import param

_FT = method_params()
KINDS = ("text",)
LABEL = "Hugging Face text classifier"


@dataclass(frozen=True)
class Config:
    model: str = param("sentence-transformers/all-MiniLM-L6-v2", label="Pretrained model", kind="str",
                       help=MODEL_HELP)
    max_length: int = param(128, label="Max length (tokens)", min=8, max=4096,
                            help="longer texts are truncated; shorter batches are padded to their longest text")
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
