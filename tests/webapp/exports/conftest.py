from __future__ import annotations

import random

import pytest
from django.test import Client
from django.utils import timezone

from tests.webapp.factories import finished_job
from webapp.jobs.events import append_events
from webapp.jobs.lifecycle import file_sha256
from webapp.jobs.models import Artifact, Job, JobEvent

TRAIN_EVENTS = 1200  # 3 values each: 3600 points, more than three log_batch calls of 1000
VAL_EVENTS = 12


@pytest.fixture
def job(alice):
    """A succeeded job of alice's with a long history in two splits, non-metric events between
    the metric ones, values that are not numbers, and two files (the model and its card)."""
    job = finished_job(alice)
    Job.objects.filter(pk=job.pk).update(  # not save(): the events' numbering (last_seq) is not ours to write
        name="iris mlp", started_at=timezone.now() - timezone.timedelta(hours=1), finished_at=timezone.now(),
        train_config={"epochs": 12, "learning_rate": 0.01, "optimizer": "adam"},
        model_config={"hidden_sizes": [32, 16], "dropout": 0.1})
    rng = random.Random(7)
    t0 = 1_760_000_000.0
    events = []
    for i in range(TRAIN_EVENTS):
        events.append(("metric", {"split": "train", "step": (i + 1) * 10, "epoch": round((i + 1) / 100, 4),
                                  "values": {"loss": rng.random() * 2, "lr": 0.01 * (1 - i / TRAIN_EVENTS),
                                             "samples_per_sec": rng.uniform(1000, 5000)},
                                  "t": round(t0 + i * 0.5123, 4)}))
        if i % 100 == 99:
            epoch = (i + 1) // 100
            events.append(("progress", {"epoch": epoch, "epochs": 12, "step": (i + 1) * 10, "t": t0 + i}))
            events.append(("metric", {"split": "val", "step": (i + 1) * 10, "epoch": epoch,
                                      "values": {"loss": rng.random(), "accuracy": rng.random(), "note": "best",
                                                 "improved": True}, "t": round(t0 + i * 0.5123 + 0.25, 4)}))
            events.append(("log", {"level": "info", "text": f"epoch {epoch} done"}))
    append_events(job.pk, events)
    job.refresh_from_db()
    art = job.directory / "artifacts"
    (art / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (art / "MODEL_CARD.md").write_text("# iris mlp\n\nA small MLP.\n")
    for name in ("model.safetensors", "MODEL_CARD.md"):
        Artifact.objects.create(job=job, name=name, size_bytes=(art / name).stat().st_size,
                                sha256=file_sha256(art / name))
    return job


def stored_points(job) -> dict[tuple[str, str], list[tuple[int, float, float]]]:
    """{(split, value name): [(step, wall time, value), ...]} straight from the stored rows: every
    numeric value of every metric event, the time being the event's own `t` (else when it was stored)."""
    out: dict = {}
    for e in JobEvent.objects.filter(job=job, kind="metric").order_by("seq"):
        for name, value in e.data["values"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.setdefault((e.data["split"], name), []).append((e.data["step"], e.data.get("t", e.created_at.timestamp()), value))
    return out


@pytest.fixture
def client_bob(bob):
    c = Client()
    c.force_login(bob)
    return c
