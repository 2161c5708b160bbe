"""Try-the-model for Hugging Face jobs without the stack (workers.serving.hf_predict): a model.zip
with model/ (full fine-tuning) and one with adapter/ only (LoRA on its base), classifiers' top
classes, a causal LM's answer streamed in pieces that add up to the final text."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests import datagen, hfmodels
from tests.workers.test_hf import tiny_bert
from workers.training.spec import TrainSpec


def _train(spec: TrainSpec) -> Path:
    from workers.hf import run

    assert run(spec).status == "succeeded"
    return Path(spec.output_dir) / "artifacts"


@pytest.fixture(scope="module")
def lora_lm(tmp_path_factory):
    """A tiny GPT-2 with a LoRA adapter, exported as adapter/ alone."""
    from workers.datasets import ingest

    tmp = tmp_path_factory.mktemp("lm")
    corpus = datagen.repetitive_corpus(tmp / "c.txt", repeats=20)
    ingest("corpus", corpus, tmp / "ds", {})
    folder = hfmodels.tiny_gpt2(tmp / "gpt", corpus.read_text())
    spec = TrainSpec("hf_causal_lm", {"model": "local:gpt", "block_size": 16, "max_new_tokens": 4, "method": "lora",
                                      "lora_rank": 4},
                     {"epochs": 1, "batch_size": 32, "learning_rate": 1e-2}, str(tmp / "ds"), str(tmp / "job"),
                     device="cpu", log_interval=0.0, extra={"model_path": str(folder)})
    return _train(spec), folder


def test_an_adapter_only_lm_is_loaded_on_its_base_and_streams_its_answer(lora_lm):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workers.serving import hf_predict, predict as zoo

    art, base = lora_lm
    with zipfile.ZipFile(art / "model.zip") as zf:
        assert not any(n.startswith("model/") for n in zf.namelist())  # adapter only: no merge
    pieces = []
    inputs = {"prompt": "the quick", "temperature": "0", "max_new_tokens": "24"}
    result = hf_predict.predict(art, "causal_lm", inputs, base=lambda: base,
                                on_text=lambda offset, text: pieces.append((offset, text)))
    assert result["type"] == "text" and result["prompt"] == "the quick" and result["max_new_tokens"] == 24
    assert result["generated"] and result["tokens"] == 24
    # The pieces, in order, each starting where the previous ended, are the answer.
    text = ""
    for offset, piece in pieces:
        assert offset == len(text)
        text += piece
    assert text == result["generated"]

    # The same greedy answer as PEFT's own loading of the downloaded adapter.
    tok = AutoTokenizer.from_pretrained(base)
    with zipfile.ZipFile(art / "model.zip") as zf:
        zf.extractall(art.parent / "unzipped")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), art.parent / "unzipped" / "adapter")
    ids = tok("the quick", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.eval().generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False,
                                    pad_token_id=tok.eos_token_id)
    assert result["generated"] == tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    # The second try comes from the cache; bad options are the user's errors.
    hits = zoo.stats["hits"]
    sampled = hf_predict.predict(art, "causal_lm", {"prompt": "the", "temperature": "1.0", "top_k": "5",
                                                    "top_p": "0.9", "max_new_tokens": "3"}, base=lambda: base, seed=1)
    assert zoo.stats["hits"] == hits + 1 and sampled["top_k"] == 5 and sampled["top_p"] == 0.9
    for bad, message in [({"prompt": " "}, "give a prompt"), ({"prompt": "a", "max_new_tokens": "0"}, "between"),
                         ({"prompt": "a", "top_p": "0"}, "top_p must be above 0"),
                         ({"prompt": "a", "max_new_tokens": "64"}, "below the model's context")]:
        with pytest.raises(hf_predict.InputError, match=message):
            hf_predict.predict(art, "causal_lm", bad, base=lambda: base)


def test_the_stream_batches_tokens_and_holds_back_a_cut_character():
    import torch

    class Tok:
        def decode(self, ids, skip_special_tokens=True):
            return bytes(ids).decode("utf-8", errors="replace")

    frames = []
    s = hf_predict_stream(Tok(), frames, interval=3600)
    s.put(torch.tensor([[104, 105]]))  # the prompt: skipped
    for b in "é!".encode():
        s.put(torch.tensor([b]))
    assert frames == []  # batched until the interval passes
    s.flush()
    assert frames == [(0, "é!")]
    s.put(torch.tensor([0xC3]))  # the first byte of a two-byte character waits...
    s.flush()
    assert frames == [(0, "é!")]
    s.put(torch.tensor([0xA9]))  # ...for the second
    s.end()
    assert frames == [(0, "é!"), (2, "é")]


def hf_predict_stream(tok, frames, interval):
    from workers.serving.hf_predict import TokenStream

    return TokenStream(tok, 2, lambda offset, text: frames.append((offset, text)), interval=interval)


def test_text_and_image_classifiers_give_their_top_classes(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from workers.datasets import ingest
    from workers.hf.data import load_info, raw_texts
    from workers.serving import hf_predict

    ingest("text", datagen.sentiment_csv(tmp_path / "reviews.csv", n=40), tmp_path / "text", {})
    info = load_info(tmp_path / "text")
    bert = tiny_bert(tmp_path / "bert", raw_texts(tmp_path / "text", info)[0])
    art = _train(TrainSpec("hf_text_classification", {"model": "local:bert", "max_length": 32},
                           {"epochs": 1, "batch_size": 16}, str(tmp_path / "text"), str(tmp_path / "tjob"),
                           device="cpu", log_interval=0.0, extra={"model_path": str(bert)}))
    result = hf_predict.predict(art, "text_classification", {"text": "a wonderful film"}, info=info, max_length=32)
    assert result["type"] == "classes"
    assert {c["label"] for c in result["top"]} == {str(c) for c in info["classes"]}
    assert abs(sum(c["confidence"] for c in result["top"]) - 1) < 1e-4
    with zipfile.ZipFile(art / "model.zip") as zf:
        zf.extractall(tmp_path / "unzipped")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "unzipped" / "model").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "unzipped" / "model")
    with torch.no_grad():
        probs = model(**tok("a wonderful film", return_tensors="pt")).logits.softmax(-1)[0]
    assert abs(result["top"][0]["confidence"] - float(probs.max())) < 1e-5
    with pytest.raises(hf_predict.InputError, match="type a text"):
        hf_predict.predict(art, "text_classification", {"text": ""}, info=info)

    ingest("image", datagen.digits_png_zip(tmp_path / "digits.zip", limit=60), tmp_path / "img", {})
    img_info = load_info(tmp_path / "img")
    vit = hfmodels.tiny_vit(tmp_path / "vit", image_size=8, channels=1)
    art = _train(TrainSpec("hf_image_classification", {"model": "local:vit"}, {"epochs": 1, "batch_size": 40},
                           str(tmp_path / "img"), str(tmp_path / "ijob"), device="cpu", log_interval=0.0,
                           extra={"model_path": str(vit)}))
    with zipfile.ZipFile(tmp_path / "digits.zip") as zf:
        png = zf.read(next(n for n in zf.namelist() if n.endswith(".png")))
    result = hf_predict.predict(art, "image_classification", {}, png, info=img_info)
    assert len(result["top"]) == 5 and all(c["label"] in img_info["classes"] for c in result["top"])
    with pytest.raises(hf_predict.InputError, match="not an image"):
        hf_predict.predict(art, "image_classification", {}, b"not a png", info=img_info)
