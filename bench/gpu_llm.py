"""LoRA and QLoRA fine-tuning of a causal LM through the real runtime (workers.hf.run).

    .venv/bin/python bench/gpu_llm.py              # on a CUDA GPU: a config-built GPT-2 (~100 M parameters)
    .venv/bin/python bench/gpu_llm.py --dry-run    # anywhere: the tiny GPT-2 of the tests, a few steps on CPU

Per case (lora, qlora; `--cases full,lora,qlora` adds full fine-tuning) it prints the training throughput in tokens/s (the job's own
samples_per_s: tokens for a language model), the peak memory (CUDA: max allocated; CPU: the
process's peak RSS) and the final losses, or `skip <case>: <reason>` when the case cannot run
here (no CUDA, no bitsandbytes); never nothing. A last line is the JSON of every case.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from models_zoo.hf import memory  # noqa: E402
from tests import datagen, hfmodels  # noqa: E402
from workers.training.callbacks import Callback  # noqa: E402
from workers.training.spec import TrainSpec  # noqa: E402

CASES = ("lora", "qlora")


class Losses(Callback):
    def __init__(self):
        self.train: list[float] = []

    def on_log(self, state, control, split, values):
        if split == "train":
            self.train.append(values["loss"])


def gpt2_100m(folder: Path, text: str, vocab_size: int = 8000) -> Path:
    """A randomly initialised GPT-2 of 12 layers × 768 (≈ 92 M parameters with this vocabulary),
    saved as safetensors (QLoRA quantizes weights it loads), with a BPE tokenizer trained on `text`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    hfmodels.tiny_gpt2(folder, text, vocab_size=vocab_size)  # the tokenizer (and a tiny model, replaced)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def skip_reason(case: str, device: str) -> str:
    if case != "qlora":
        return ""
    if device != "cuda":
        return "4-bit QLoRA needs CUDA (bitsandbytes NF4 kernels); this machine has none"
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return "bitsandbytes is not installed (pip install bitsandbytes on CUDA workers)"
    return ""


def run_case(case: str, folder: Path, ds: Path, work: Path, device: str, args) -> dict:
    import torch

    from workers.hf import run

    model_config = {"model": "local:bench", "block_size": args.block_size, "max_new_tokens": 8,
                    "method": case, "lora_rank": 16, "lora_alpha": 32, "gradient_checkpointing": args.checkpointing}
    spec = TrainSpec("hf_causal_lm", model_config,
                     {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr, "seed": 0},
                     str(ds), str(work / case), device=device, log_interval=0.5, extra={"model_path": str(folder)})
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    losses = Losses()
    start = time.perf_counter()
    result = run(spec, [losses])
    wall = time.perf_counter() - start
    if device == "cuda":
        peak, where = torch.cuda.max_memory_allocated() / 2**20, "CUDA max allocated"
    else:
        peak, where = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
    # The form's estimate for the same job, less the CUDA context (max allocated does not count it).
    est = memory.estimate(json.loads((folder / "config.json").read_text()), method=case, batch_size=args.batch_size,
                          seq_len=args.block_size, gradient_checkpointing=args.checkpointing, lora_rank=16,
                          params=memory.safetensors_params(folder))
    return {"case": case, "status": result.status, "tokens_per_s": round(result.metrics.get("samples_per_s", 0.0), 1),
            "peak_memory_mib": round(peak, 1), "memory": where,
            "estimate_mib": round((est.total - est.context) / 2**20, 1),
            "first_train_loss": round(losses.train[0], 4) if losses.train else None,
            "final_train_loss": round(losses.train[-1], 4) if losses.train else None,
            "final_val_loss": round(result.metrics.get("loss", float("nan")), 4), "wall_s": round(wall, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="the tests' tiny GPT-2 on CPU, a few steps")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--repeats", type=int, default=400, help="corpus size (repeats of the generated paragraph)")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing")
    args = p.parse_args(argv)

    import torch

    from workers.datasets import ingest

    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    if args.dry_run:
        args.block_size, args.batch_size, args.repeats, args.lr = 32, 16, 20, 3e-2
    elif device != "cuda":
        print("no CUDA GPU: the ~100 M model is not run on CPU; use --dry-run for the tiny one", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="gpu-llm-") as tmp:
        work = Path(tmp)
        corpus = datagen.repetitive_corpus(work / "corpus.txt", repeats=args.repeats)
        ingest("corpus", corpus, work / "ds", {})
        text = corpus.read_text()
        folder = (hfmodels.tiny_gpt2(work / "model", text) if args.dry_run or device != "cuda"
                  else gpt2_100m(work / "model", text))
        for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
            reason = skip_reason(case, device) or ("" if args.dry_run or device == "cuda"
                                                   else "no CUDA GPU (the ~100 M model runs on GPU only)")
            if reason:
                print(f"skip {case}: {reason}", flush=True)
                results.append({"case": case, "skipped": reason})
                continue
            row = run_case(case, folder, work / "ds", work, device, args)
            print(f"{case}: {row['tokens_per_s']:,.0f} tokens/s, peak memory {row['peak_memory_mib']:,.0f} MiB "
                  f"({row['memory']}; estimate {row['estimate_mib']:,.0f} MiB without the CUDA context), train loss {row['first_train_loss']} -> {row['final_train_loss']}, "
                  f"final val loss {row['final_val_loss']} ({row['status']}, {row['wall_s']} s)", flush=True)
            results.append(row)
    print(json.dumps({"device": device, "dry_run": args.dry_run, "cases": results}))
    return 0 if all(r.get("status", "succeeded") == "succeeded" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
