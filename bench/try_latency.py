"""Try-the-model round trip: the page POSTs an input → the answer arrives on the user's socket.

    .venv/bin/python bench/try_latency.py [--tries 30]

Starts the real stack (redis-server, one Celery worker consuming train,ingest,infer, uvicorn),
trains a small CNN on 8×8 digits and a GPT on a small corpus, then times the first try of each
(the worker loads the model) and the following ones (the model comes from the worker's LRU),
printing p50/p95 of the whole round trip and of the worker's own model time.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import datagen  # noqa: E402
from tests.integration.helpers import login  # noqa: E402
from tests.integration.test_try_model import pushed, train, try_model, user_socket  # noqa: E402
from tests.stack import PASSWORD, running_stack  # noqa: E402


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def measure(stack, session, ws, job_id, make_request, tries):
    rows = []
    for _ in range(tries + 1):
        data, files = make_request()
        t0 = time.perf_counter()
        r = try_model(stack, session, job_id, data, files)
        p = pushed(ws, r.json()["prediction"]["id"])
        assert p["status"] == "done", p["error"]
        rows.append((time.perf_counter() - t0, p["seconds"]))
    cold, warm = rows[0], rows[1:]
    return cold, [w[0] for w in warm], [w[1] for w in warm]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tries", type=int, default=30)
    args = ap.parse_args()
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    tmp = Path(tempfile.mkdtemp())
    digits = load_digits()
    buf = io.BytesIO()
    Image.fromarray((digits.images[1600] * 255 / 16).astype(np.uint8)).save(buf, format="PNG")
    with running_stack() as stack:
        api = stack.api("alice")
        cnn = train(stack, api, datagen.digits_png_zip(tmp / "d.zip", limit=400), "image", "cnn", epochs=1)
        gpt = train(stack, api, datagen.repetitive_corpus(tmp / "c.txt", repeats=60), "corpus", "gpt",
                    {"layers": 2, "heads": 4, "width": 64, "block_size": 64}, epochs=1)
        session = login(stack, "alice", PASSWORD)
        with user_socket(stack, session) as ws:
            cases = {
                "image (CNN, 8x8)": (cnn, lambda: ({}, {"image": ("x.png", buf.getvalue())})),
                "prompt (GPT, 100 tokens)": (gpt, lambda: ({"prompt": "the quick ", "length": "100"}, None)),
            }
            for name, (job, make) in cases.items():
                cold, warm, model = measure(stack, session, ws, job, make, args.tries)
                print(json.dumps({"case": name, "cold_round_trip_ms": round(cold[0] * 1000, 1),
                                  "cold_model_ms": round(cold[1] * 1000, 1), "tries": args.tries,
                                  "warm_round_trip_p50_ms": round(statistics.median(warm) * 1000, 1),
                                  "warm_round_trip_p95_ms": round(pct(warm, 0.95) * 1000, 1),
                                  "warm_model_p50_ms": round(statistics.median(model) * 1000, 1)}))


if __name__ == "__main__":
    main()
