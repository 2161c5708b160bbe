"""The one prepared GPU check (issue 17): every zoo family on CUDA (bf16 autocast, channels_last for
CNNs, data on the device), CUDA resume after SIGKILL, NVML telemetry, full/bare training overhead for
the CNN preset and ResNet-18 on CIFAR-10-shaped data, MiniLM fine-tuning samples/s in bf16, DDP
scaling when there is more than one GPU. Prints one Markdown table at the end.

    bench/gpu_check.sh              # on a lent GPU machine (about 8 minutes)
    bench/gpu_check.sh --dry-run    # the same steps on CPU with tiny sizes (the test suite runs it)

Resumable: each finished step's row is kept in the state file (`--state`, default
test-artifacts/gpu_check.json); a rerun after a cut-off skips them (`--fresh` starts over). A step
that fails records its error and the check goes on. Exit status 0 when every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

FAMILIES = [  # (architecture, dataset kind, model settings, batch)
    ("mlp", "table", {"hidden_sizes": [64, 64]}, 64),
    ("cnn", "image", {}, 32),
    ("cnn", "image", {"preset": "lenet"}, 32),
    ("resnet", "image", {}, 32),
    ("cnn1d", "sequence", {}, 32),
    ("rnn", "text", {"cell": "gru", "hidden_size": 32, "embedding_dim": 32}, 32),
    ("transformer", "text", {"layers": 1, "width": 32, "heads": 2}, 32),
    ("gpt", "corpus", {"layers": 1, "width": 32, "heads": 2, "block_size": 32}, 16),
]


def _stack_importable() -> bool:
    """Whether this python holds the web stack's packages (the full path needs Django, Celery, Redis)."""
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("django", "celery", "redis", "uvicorn", "channels"))


def _pythonpath() -> str:
    """The checkout first, then whatever PYTHONPATH the caller gave (e.g. carried packages)."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


class Check:
    def __init__(self, args):
        self.args = args
        self.dry = args.dry_run
        self.device = "cpu" if self.dry else "cuda"
        self.state_path = Path(args.state)
        self.rows: dict[str, dict] = {}
        if self.state_path.is_file() and not args.fresh:
            self.rows = json.loads(self.state_path.read_text()).get("rows", {})
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))

    def step(self, name: str, fn, *, gpu_only: bool = False, needs=None) -> None:
        if name in self.rows and self.rows[name].get("ok"):
            print(f"[{name}] done in an earlier run: {self.rows[name]['result']}", flush=True)
            return
        if needs is not None and not needs():
            self.rows[name] = {"ok": True, "result": "skipped: " + getattr(needs, "why", "not applicable")}
            self._save()
            return
        print(f"[{name}] ...", flush=True)
        t = time.perf_counter()
        try:
            result = fn()
            row = {"ok": True, "result": result}
        except Exception as exc:  # noqa: BLE001 - one step's failure is recorded, the rest still runs
            row = {"ok": False, "result": f"FAILED: {type(exc).__name__}: {str(exc)[:300]}"}
        row["seconds"] = round(time.perf_counter() - t, 1)
        self.rows[name] = row
        print(f"[{name}] {row['result']} ({row['seconds']} s)", flush=True)
        self._save()

    def _save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(json.dumps({"dry_run": self.dry, "rows": self.rows}, indent=1))

    # -- steps ----------------------------------------------------------------------------------
    def environment(self) -> str:
        import torch

        if self.dry:
            return f"dry run on CPU: torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device (driver, CUDA_VISIBLE_DEVICES, a CPU-only torch?)")
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return (f"torch {torch.__version__}, CUDA {torch.version.cuda}, {len(names)} GPU(s): {', '.join(names)}, "
                f"bf16 {torch.cuda.is_bf16_supported()}")

    def dataset(self, kind: str) -> Path:
        from tests import datagen
        from workers.datasets import ingest

        out = self.tmp / f"ds-{kind}"
        if out.exists():
            return out
        n = 64 if self.dry else 2000
        if kind == "table":
            src, opts = datagen.table_csv(self.tmp / "t.csv", n=n), {}
        elif kind == "image":
            src, opts = datagen.digits_png_zip(self.tmp / "digits.zip", limit=n), {"image_size": 32}
        elif kind == "sequence":
            src, opts = datagen.sequence_csv(self.tmp / "s.csv", n=n), {}
        elif kind == "text":
            src, opts = datagen.sentiment_csv(self.tmp / "x.csv", n=n), {}
        else:
            src, opts = datagen.repetitive_corpus(self.tmp / "c.txt", repeats=20 if self.dry else 300), {}
        ingest({"table": "tabular"}.get(kind, kind), src, out, opts)
        return out

    def families(self) -> str:
        import torch

        from workers.training import TrainSpec, run
        from workers.training.callbacks import Callback

        class Seen(Callback):
            def __init__(self):
                self.messages, self.device_ok = [], None

            def on_message(self, state, control, level, text):
                self.messages.append(text)

        out, failures = [], []
        for i, (arch, kind, model, batch) in enumerate(FAMILIES):
            seen = Seen()
            spec = TrainSpec(arch, model, {"epochs": 1, "batch_size": batch, "learning_rate": 1e-3},
                             str(self.dataset(kind)), str(self.tmp / f"job-{i}-{arch}"), device=self.device,
                             log_interval=1e9)
            try:
                t = time.perf_counter()
                result = run(spec, [seen])
                text = " ".join(seen.messages)
                flags = [f for f, present in (("bf16", "bf16" in text), ("cuda", "cuda" in text)) if present]
                if result.status != "succeeded":
                    failures.append(f"{arch}: {result.status}")
                elif not self.dry and "cuda" not in text:
                    failures.append(f"{arch}: did not train on CUDA ({text[:120]})")
                label = arch + ("/" + model["preset"] if "preset" in model else "")
                out.append(f"{label} {time.perf_counter() - t:.1f}s" + (f" [{','.join(flags)}]" if flags else ""))
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{arch}: {type(exc).__name__}: {str(exc)[:120]}")
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
        if failures:
            raise RuntimeError("; ".join(failures))
        return "; ".join(out)

    def resume_after_sigkill(self) -> str:
        """A training process killed (SIGKILL) after its first checkpoint; a new one resumes."""
        ds, job = self.dataset("image"), self.tmp / "job-resume"
        script = (
            "from workers.training import TrainSpec, run\n"
            "from workers.training.callbacks import Callback\n"
            "class Say(Callback):\n"
            "    def on_message(self, state, control, level, text):\n"
            "        print('MSG', text, flush=True)\n"
            f"spec = TrainSpec('cnn', {{}}, {{'epochs': 4, 'batch_size': 16}}, {str(ds)!r}, {str(job)!r}, "
            f"device={self.device!r}, log_interval=1e9)\n"
            "r = run(spec, [Say()])\n"
            "print('STATUS', r.status, r.epochs_completed, flush=True)\n")
        env = {**os.environ, "PYTHONPATH": _pythonpath()}
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while not list((job / "checkpoints").glob("ckpt-*.pt")) and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the first run ended before its first checkpoint: "
                                   + proc.stdout.read().decode(errors="replace")[-300:])
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        killed_at = sorted(p.name for p in (job / "checkpoints").glob("ckpt-*.pt"))
        again = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=600)
        if "STATUS succeeded 4" not in again.stdout or "resumed from the checkpoint" not in again.stdout:
            raise RuntimeError(f"no resume: {again.stdout[-400:]} {again.stderr[-400:]}")
        epoch = re.search(r"resumed from the checkpoint after epoch (\d+)", again.stdout).group(1)
        return f"killed with {killed_at[-1]} on disk; the rerun resumed after epoch {epoch} and finished 4/4"

    def telemetry(self) -> str:
        from workers.adapters.gpu import describe, telemetry

        gpus = telemetry()
        if not self.dry and not gpus:
            raise RuntimeError("no GPU telemetry (NVML not loadable?)")
        if not gpus:
            return "no GPU (dry run): the heartbeat reports none"
        fields = sorted({k for g in gpus for k in g})
        return f"{describe(gpus)}; fields: {', '.join(fields)}"

    def _bench(self, argv: list[str], timeout: int) -> str:
        r = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "PYTHONPATH": _pythonpath()})
        if r.returncode != 0:
            raise RuntimeError((r.stderr or r.stdout)[-400:])
        return r.stdout

    def overhead(self, model: str, *extra: str) -> str:
        images = "64" if self.dry else "50000"
        argv = ["bench/train_overhead.py", "--data", "cifar", "--model", model, "--images", images,
                "--epochs", "1" if self.dry else "6", "--rounds", "1" if self.dry else "2",
                "--device", self.device, "--batch-size", "64" if self.dry else "512", *extra]
        if self.dry:
            argv.append("--skip-full")  # the real stack's run is covered by the suite; keep the dry run short
        elif not _stack_importable():
            argv.append("--skip-full")  # a bare GPU box (torch only): bare loop vs runtime run() alone
        out = self._bench(argv, timeout=240 if self.dry else 900)
        keep = [line.strip() for line in out.splitlines() if re.match(r"\s*(bare loop|runtime|full)\b", line)]
        if not keep:
            raise RuntimeError(f"no figures in the output: {out[-300:]}")
        return " | ".join(keep)

    def minilm(self) -> str:
        argv = ["bench/hf_finetune.py", "--device", self.device]
        argv += ["--n", "24", "--max-length", "16", "--batch-size", "4"] if self.dry else ["--n", "2000"]
        out = self._bench(argv, timeout=300 if self.dry else 600)
        if "{" not in out:
            raise RuntimeError(out[-300:])
        d = json.loads(out[out.index("{"):out.rindex("}") + 1])
        return f"{d.get('device')}: {d.get('steady_samples_per_s')} samples/s (batch {d.get('batch_size')}, " \
               f"length {d.get('max_length')})"

    def ddp(self) -> str:
        out = self._bench(["bench/ddp_scaling.py", *(["--dry-run"] if self.dry else [])], timeout=600)
        return " | ".join(line.strip() for line in out.splitlines() if line.strip())[-600:]

    def run_all(self) -> int:
        import torch

        self.step("environment", self.environment)
        self.step("families", self.families)
        self.step("resume after SIGKILL", self.resume_after_sigkill)
        self.step("NVML telemetry", self.telemetry)
        self.step("overhead CNN preset", lambda: self.overhead("cnn"))
        self.step("overhead ResNet-18", lambda: self.overhead("resnet18"))
        # The runtime with torch.compile, and with the default augmentation, against the same bare
        # eager loop: what each costs or gains (the compile time itself is in the job log).
        short = () if self.dry else ("--epochs", "4", "--rounds", "1")  # the later argparse value wins
        self.step("torch.compile ResNet-18",
                  lambda: self.overhead("cnn" if self.dry else "resnet18", "--compile", "on", *short))
        self.step("augmentation ResNet-18", lambda: self.overhead("resnet18", "--augment", "auto", *short))
        self.step("MiniLM fine-tuning", self.minilm)

        def several():
            return (ROOT / "bench" / "ddp_scaling.py").is_file() and (self.dry or torch.cuda.device_count() > 1)

        several.why = "one GPU (or bench/ddp_scaling.py missing)"
        self.step("DDP scaling", self.ddp, needs=several)
        print()
        print("| step | result | s |")
        print("|---|---|---|")
        for name, row in self.rows.items():
            print(f"| {name} | {row['result']} | {row.get('seconds', '')} |")
        return 0 if all(r["ok"] for r in self.rows.values()) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="every step on CPU with tiny sizes")
    ap.add_argument("--state", default=str(ROOT / "test-artifacts" / "gpu_check.json"))
    ap.add_argument("--fresh", action="store_true", help="forget the steps an earlier run finished")
    args = ap.parse_args()
    return Check(args).run_all()


if __name__ == "__main__":
    sys.exit(main())
