"""Fine-tune a pretrained encoder (BERT, MiniLM, RoBERTa...) for text classification:
AutoModelForSequenceClassification + its tokenizer, on a text dataset's raw texts."""

from __future__ import annotations

from dataclasses import dataclass

from models_zoo.hf import MODEL_HELP, build, common_errors  # noqa: F401 - build is the registry's contract
from models_zoo.schema import param

KINDS = ("text",)
LABEL = "Hugging Face text classifier"


@dataclass(frozen=True)
class Config:
    model: str = param("sentence-transformers/all-MiniLM-L6-v2", label="Pretrained model", kind="str",
                       help=MODEL_HELP)
    max_length: int = param(128, label="Max length (tokens)", min=8, max=4096,
                            help="longer texts are truncated; shorter batches are padded to their longest text")
    freeze_encoder: bool = param(False, label="Freeze the encoder", help="train the classification head only")


def validate_for(config: Config, info: dict) -> dict[str, str]:
    return common_errors(config, info, KINDS, LABEL)
