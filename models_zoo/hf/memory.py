"""GPU memory estimate of a Hugging Face fine-tuning job (standard library only: the web tier
calls it for the job form and the submit check).

    count_params(config)     parameters from a config.json (GPT-2, Llama-style, BERT-style, ViT;
                             a generic 12·L·h² + V·h otherwise)
    safetensors_params(dir)  the exact count from the weight files' headers, when they are there
    estimate(...)            bytes per part: weights, gradients, optimizer states, activations,
                             CUDA context

What the runner holds (workers/hf/runner.py):
    full           float32 weights + float32 gradients + AdamW's two float32 moments: 16 bytes/param
    freeze_encoder the same for the head only; the encoder's float32 weights without gradients
    lora / qlora   the frozen base (float32 for lora, as the runner loads it: 4 bytes/param; bf16 would
                   be 2; 4-bit NF4 for qlora: ~0.53 bytes/param of the linear layers, double
                   quantisation included, the embeddings and norms kept in float32) + 16 bytes per
                   adapter parameter (rank r on every linear layer of the blocks)
Activations (bf16 autocast, per layer and token, after Korthikanti et al. 2022 with fused
attention): ~34·h bytes; gradient checkpointing keeps each layer's input only (2·h bytes) plus one
layer's activations. A causal LM's float32 logits and their gradient: 8·V bytes per token.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

GIB = 1024**3
GB = 1_000_000_000  # the unit of a job's minimum GPU memory (the scheduler's) and of the messages
CUDA_CONTEXT = int(0.75 * GIB)  # the CUDA context, cuBLAS workspaces and the allocator's slack
NF4_BYTES = 0.53  # 4 bits + the blocks' absmax constants (double-quantised)
GATED = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "mixtral", "olmo", "smollm3")


def _get(config: dict, *names, default=None):
    for n in names:
        if config.get(n) is not None:
            return config[n]
    return default


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a model: its size and the widths of its layers."""

    hidden: int
    layers: int
    intermediate: int
    vocab: int
    kv_hidden: int
    gated: bool


def shape(config: dict) -> Shape:
    h = int(_get(config, "hidden_size", "n_embd", "d_model", "dim", default=768))
    layers = int(_get(config, "num_hidden_layers", "n_layer", "num_layers", "n_layers", default=12))
    inter = int(_get(config, "intermediate_size", "n_inner", "ffn_dim", "hidden_dim", default=0) or 4 * h)
    heads = int(_get(config, "num_attention_heads", "n_head", default=max(1, h // 64)))
    kv = int(_get(config, "num_key_value_heads", default=heads))
    head_dim = int(_get(config, "head_dim", default=h // heads))
    return Shape(h, layers, inter, int(_get(config, "vocab_size", default=0)), kv * head_dim,
                 str(config.get("model_type", "")) in GATED)


def count_params(config: dict) -> int:
    """The parameter count a config.json describes (the base model, without a task head)."""
    kind = str(config.get("model_type", ""))
    s = shape(config)
    h, L, i, V = s.hidden, s.layers, s.intermediate, s.vocab
    if kind == "gpt2":
        positions = int(config.get("n_positions", 1024))
        block = 4 * h + (h * 3 * h + 3 * h) + (h * h + h) + (h * i + i) + (i * h + h)
        return V * h + positions * h + L * block + 2 * h
    if s.gated:
        heads_dim = h if "head_dim" not in config else int(config["num_attention_heads"]) * int(config["head_dim"])
        bias = heads_dim + 2 * s.kv_hidden if kind == "qwen2" else 0
        attn = h * heads_dim + 2 * h * s.kv_hidden + heads_dim * h + bias
        block = attn + 3 * h * i + 2 * h
        head = 0 if config.get("tie_word_embeddings", False) else V * h
        return V * h + L * block + h + head
    if kind in ("bert", "roberta", "xlm-roberta", "electra", "deberta", "camembert"):
        positions = int(config.get("max_position_embeddings", 512))
        types = int(config.get("type_vocab_size", 2))
        embeddings = V * h + positions * h + types * h + 2 * h
        block = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
        pooler = h * h + h if kind == "bert" else 0
        return embeddings + L * block + pooler
    if kind in ("vit", "deit"):
        patch, channels = int(config.get("patch_size", 16)), int(config.get("num_channels", 3))
        patches = (int(config.get("image_size", 224)) // patch) ** 2
        embeddings = channels * patch * patch * h + h + h + (patches + 1) * h
        block = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 4 * h
        return embeddings + L * block + 2 * h
    return V * h + L * (4 * h * h + 2 * h * i)


def safetensors_params(folder: str | Path) -> int | None:
    """The exact parameter count from the *.safetensors headers in `folder` (None without any)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100 * 1024**2:
                return None
            header = json.loads(fh.read(n))
        for name, t in header.items():
            # integer tensors are buffers saved beside the weights (BERT's position_ids), not parameters
            if name != "__metadata__" and not t["dtype"].startswith(("I", "U", "BOOL")):
                total += math.prod(t["shape"])
    return total


def linear_params(s: Shape) -> int:
    """Weights of the blocks' linear layers (what LoRA adapts and NF4 quantises)."""
    mlp = (3 if s.gated else 2) * s.hidden * s.intermediate
    return s.layers * (2 * s.hidden * s.hidden + 2 * s.hidden * s.kv_hidden + mlp)


def adapter_params(s: Shape, rank: int) -> int:
    """LoRA on every linear layer of the blocks ("all-linear"): r·(in + out) each."""
    attn = 2 * (s.hidden + s.hidden) + 2 * (s.hidden + s.kv_hidden)
    mlp = (3 if s.gated else 2) * (s.hidden + s.intermediate)
    return s.layers * rank * (attn + mlp)


@dataclass(frozen=True)
class Estimate:
    params: int
    trainable: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    context: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.context

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total, "total_gb": round(self.total / GB, 2)}


def estimate(config: dict, *, method: str = "full", batch_size: int = 8, seq_len: int = 512,
             gradient_checkpointing: bool = False, lora_rank: int = 8, task: str = "causal_lm",
             params: int | None = None) -> Estimate:
    """The GPU memory a fine-tuning step needs, in bytes per part (see the module)."""
    s = shape(config)
    n = params or count_params(config)
    tokens = batch_size * seq_len
    if method in ("lora", "qlora"):
        trainable = adapter_params(s, lora_rank)
        if method == "qlora":
            linear = min(linear_params(s), n)
            weights = int(linear * NF4_BYTES) + 4 * (n - linear)
        else:
            weights = 4 * n
        weights += 4 * trainable
    elif method == "freeze_encoder":
        trainable = s.hidden * 2  # the head: tiny beside the rest
        weights = 4 * n
    else:
        trainable = n
        weights = 4 * n
    per_layer = 34 * s.hidden * tokens
    if gradient_checkpointing:
        activations = s.layers * 2 * s.hidden * tokens + per_layer
    else:
        activations = s.layers * per_layer
    if task == "causal_lm":
        activations += 8 * s.vocab * tokens
    return Estimate(params=n, trainable=trainable, weights=weights, gradients=4 * trainable,
                    optimizer=8 * trainable, activations=activations, context=CUDA_CONTEXT)


def describe(e: Estimate) -> str:
    return (f"about {e.total / GB:.1f} GB: weights {e.weights / GB:.1f}, gradients {e.gradients / GB:.1f}, "
            f"optimizer {e.optimizer / GB:.1f}, activations {e.activations / GB:.1f}, CUDA context "
            f"{e.context / GB:.2f} ({e.params / 1e6:,.1f} M parameters, {e.trainable / 1e6:,.2f} M trained)")
