"""The GPU memory estimate of HF fine-tuning: parameter counts of well-known models from their
config.json, the exact count of a real folder's safetensors, and how method, batch, length and
gradient checkpointing move the estimate."""

from __future__ import annotations

import json

import pytest

from models_zoo.hf.memory import GIB, count_params, estimate, safetensors_params
from tests import hfmodels

GPT2 = {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12}
LLAMA2_7B = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
             "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
             "tie_word_embeddings": False}
BERT_BASE = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
             "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
             "type_vocab_size": 2}
VIT_BASE = {"model_type": "vit", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "image_size": 224, "patch_size": 16, "num_channels": 3}


@pytest.mark.parametrize(("config", "known"), [
    (GPT2, 124_439_808),          # openai-community/gpt2
    (LLAMA2_7B, 6_738_415_616),   # meta-llama/Llama-2-7b-hf
    (BERT_BASE, 109_482_240),     # google-bert/bert-base-uncased (BertModel, with the pooler)
    # google/vit-base-patch16-224-in21k: 86,389,248 as ViTModel, less its pooler (h² + h), which
    # ViTForImageClassification does not build
    (VIT_BASE, 86_389_248 - (768 * 768 + 768)),
])
def test_parameter_counts_of_known_models(config, known):
    assert count_params(config) == known


def test_a_real_folder_counts_the_same_from_its_config_and_its_safetensors(tmp_path):
    minilm = hfmodels.minilm_dir()
    exact = safetensors_params(minilm)
    assert exact == count_params(json.loads((minilm / "config.json").read_text()))
    gpt = hfmodels.tiny_gpt2(tmp_path / "gpt", "some text to train a tokenizer on " * 20)
    assert safetensors_params(gpt) == count_params(json.loads((gpt / "config.json").read_text()))
    assert safetensors_params(tmp_path) is None


def test_method_batch_length_and_checkpointing_move_the_estimate():
    full = estimate(LLAMA2_7B, method="full", batch_size=1, seq_len=512)
    assert full.weights == 4 * full.params and full.gradients == 4 * full.params
    assert full.optimizer == 8 * full.params  # AdamW's two moments
    lora = estimate(LLAMA2_7B, method="lora", batch_size=1, seq_len=512, lora_rank=8)
    qlora = estimate(LLAMA2_7B, method="qlora", batch_size=1, seq_len=512, lora_rank=8)
    assert 15e6 < lora.trainable < 25e6  # r=8 on all linear layers of Llama-2-7B: 19,988,480
    assert lora.trainable == 19_988_480 and lora.gradients == 4 * lora.trainable
    assert full.total > lora.total > qlora.total
    assert 100 < full.total / GIB < 115 and 24 < lora.total / GIB < 30 and 6 < qlora.total / GIB < 9
    bigger = estimate(LLAMA2_7B, method="lora", batch_size=4, seq_len=1024)
    assert bigger.activations == pytest.approx(8 * lora.activations)
    ckpt = estimate(LLAMA2_7B, method="lora", batch_size=4, seq_len=1024, gradient_checkpointing=True)
    assert ckpt.activations < bigger.activations / 3 and ckpt.weights == bigger.weights
