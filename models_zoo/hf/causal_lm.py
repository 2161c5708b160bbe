"""Fine-tune a pretrained causal language model (GPT-2 style): AutoModelForCausalLM + its
tokenizer on a text corpus cut into blocks, or on instruction / chat conversations (the
tokenizer's chat template, the loss on the assistant's replies only), with generated samples
after each evaluation."""

from __future__ import annotations

from dataclasses import dataclass

# build and upgrade are the registry's contract (upgrade: settings stored by earlier versions)
from models_zoo.hf import (MODEL_HELP, build, common_errors, method_fields_errors, method_params,  # noqa: F401
                           upgrade)
from models_zoo.schema import param

_FT = method_params()
KINDS = ("corpus", "chat")
LABEL = "Hugging Face causal LM"


@dataclass(frozen=True)
class Config:
    model: str = param("openai-community/gpt2", label="Pretrained model", kind="str", help=MODEL_HELP)
    block_size: int = param(128, label="Block size (tokens)", min=8, max=8192,
                            help="the corpus is cut into blocks of this many tokens; a conversation is cut "
                                 "after this many")
    prompt: str = param("", label="Prompt for generated samples", kind="str",
                        help="empty: the start of the validation text")
    max_new_tokens: int = param(64, label="Generated tokens per sample", min=1, max=1024)
    temperature: float = param(0.8, label="Sampling temperature", min=0.0, max=5.0, help="0 = greedy")
    method: str = _FT["method"]
    lora_rank: int = _FT["lora_rank"]
    lora_alpha: int = _FT["lora_alpha"]
    lora_dropout: float = _FT["lora_dropout"]
    lora_target_modules: str = _FT["lora_target_modules"]
    merge_adapter: bool = _FT["merge_adapter"]
    gradient_checkpointing: bool = _FT["gradient_checkpointing"]
    grad_accumulation: int = _FT["grad_accumulation"]

    def check(self) -> dict[str, str]:
        errors = method_fields_errors(self)
        if self.method == "freeze_encoder":
            errors["method"] = "a causal LM has no separate head to train alone; choose full, lora or qlora"
        if len(self.prompt) > 2000:
            errors["prompt"] = "at most 2000 characters"
        return errors


def validate_for(config: Config, info: dict) -> dict[str, str]:
    return common_errors(config, info, KINDS, LABEL)
