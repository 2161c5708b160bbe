"""Try many vs single tries: the worker-side cost per input of `workers.serving.batch.predict_file`
(the ingest's reader, the single try's preparation, 256 inputs per forward pass, the CSV) against
one `workers.serving.predict.predict` call per row (the model from the LRU in both).

    .venv/bin/python bench/try_many.py [--rows 20000]

No Django, no stack: trains a small MLP on a synthetic table in a temp dir first. Prints rows per
second of both and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.stack import write_separable_csv  # noqa: E402
from workers.datasets import ingest  # noqa: E402
from workers.serving import predict as single  # noqa: E402
from workers.serving.batch import predict_file  # noqa: E402
from workers.training import TrainSpec, run  # noqa: E402
from workers.training.device import tune_cpu  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--single", type=int, default=500, help="rows tried one by one")
    args = parser.parse_args()
    tune_cpu()  # as in each worker pool process: torch's threads capped at the CPUs it may use
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ingest("tabular", write_separable_csv(tmp / "train.csv", n=400), tmp / "ds", {})
        spec = TrainSpec("mlp", {"hidden_sizes": [32, 32]}, {"epochs": 2}, str(tmp / "ds"), str(tmp / "job"),
                         device="cpu", log_interval=1e9)
        assert run(spec).status == "succeeded"
        art = tmp / "job" / "artifacts"
        inputs = write_separable_csv(tmp / "many.csv", n=args.rows, seed=3)
        single.load(art)  # both measured with the model already loaded
        t0 = time.perf_counter()
        result = predict_file(art, inputs, tmp / "out.csv")
        many = time.perf_counter() - t0
        assert result["rows"] == args.rows and not result["failed"]
        rows = [line.split(",")[:3] for line in inputs.read_text().splitlines()[1:args.single + 1]]
        t0 = time.perf_counter()
        for x1, x2, x3 in rows:
            single.predict(art, {"features": {"x1": x1, "x2": x2, "x3": x3}})
        one = time.perf_counter() - t0
    print(f"try many: {args.rows} rows in {many:.2f} s = {args.rows / many:,.0f} rows/s")
    print(f"single tries: {len(rows)} rows in {one:.2f} s = {len(rows) / one:,.0f} rows/s (worker side only)")
    print(f"ratio: try many is {(args.rows / many) / (len(rows) / one):.1f}x the rate of single tries")


if __name__ == "__main__":
    main()
