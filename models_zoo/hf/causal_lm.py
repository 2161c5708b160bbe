"""Fine-tune a pretrained causal language model (GPT-2 style): AutoModelForCausalLM + its
tokenizer on a text corpus cut into blocks, with generated samples after each evaluation."""

from __future__ import annotations

from dataclasses import dataclass

from models_zoo.hf import MODEL_HELP, build, common_errors  # noqa: F401 - build is the registry's contract
from models_zoo.schema import param

KINDS = ("corpus",)
LABEL = "Hugging Face causal LM"


@dataclass(frozen=True)
class Config:
    model: str = param("openai-community/gpt2", label="Pretrained model", kind="str", help=MODEL_HELP)
    block_size: int = param(128, label="Block size (tokens)", min=8, max=8192,
                            help="the corpus is cut into blocks of this many tokens")
    prompt: str = param("", label="Prompt for generated samples", kind="str",
                        help="empty: the start of the validation text")
    max_new_tokens: int = param(64, label="Generated tokens per sample", min=1, max=1024)
    temperature: float = param(0.8, label="Sampling temperature", min=0.0, max=5.0, help="0 = greedy")

    def check(self) -> dict[str, str]:
        if len(self.prompt) > 2000:
            return {"prompt": "at most 2000 characters"}
        return {}


def validate_for(config: Config, info: dict) -> dict[str, str]:
    return common_errors(config, info, KINDS, LABEL)
