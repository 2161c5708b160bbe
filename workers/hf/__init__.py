"""Hugging Face fine-tuning jobs (transformers.Trainer), no Django: `run(spec, callbacks, control)`
with the same contract and callbacks as the zoo's loop (workers.training.run).

Importing this package imports neither torch nor transformers (the web tier uses
`workers.hf.modelzip` and `workers.hf.source` to check uploaded model folders).
"""

from __future__ import annotations


def run(spec, callbacks=(), control=None):
    from workers.hf.runner import run as _run

    return _run(spec, callbacks, control)
