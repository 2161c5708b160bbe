"""Every byte a user owns counts, checked before the bytes are written (webapp/accounts/storage.py):
model ZIPs (as a whole archive), image caches at ingest, try-the-model uploads, job files."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from tests.webapp.factories import finished_job, ready_dataset
from webapp.accounts import storage
from webapp.datasets.models import Dataset, IngestFailure
from webapp.hub.models import LocalModel
from webapp.inference import services as inference
from webapp.inference.models import Prediction
from workers.datasets import IngestError
from workers.datasets.images import ingest_image_zip

pytestmark = pytest.mark.django_db


def _client(user):
    c = Client()
    c.force_login(user)
    return c


def test_a_model_zip_of_many_small_zero_files_is_refused_as_a_whole(alice, tmp_path, sent_tasks):
    """1,000 entries of 1 MiB zeros: each stays under the per-entry ratio rule, the archive does not."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", b'{"model_type": "bert"}')
        zf.writestr("model.safetensors", b"\0" * 64)
        for i in range(1000):
            zf.writestr(f"pad/{i}.bin", b"\0" * 2**20)
    assert len(buf.getvalue()) < 2 * 2**20
    r = _client(alice).post("/models/", {"name": "bomb", "task": "text_classification",
                                         "file": SimpleUploadedFile("m.zip", buf.getvalue())}, follow=True)
    assert "expand" in r.content.decode() and "zip bomb" in r.content.decode()
    assert not LocalModel.objects.exists() and sent_tasks == []


def test_a_model_zip_counts_what_it_unpacks_to(alice, settings, sent_tasks):
    settings.TRAINYARD_USER_QUOTA_MB = 3
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("config.json", b'{"model_type": "bert"}')
        zf.writestr("model.safetensors", np.random.default_rng(0).bytes(2 * 2**20))
    data = buf.getvalue()  # 2 MB stored: the ZIP and its unpacked copy make 4 MB > 3 MB
    r = _client(alice).post("/models/", {"name": "big", "task": "text_classification",
                                         "file": SimpleUploadedFile("m.zip", data)}, follow=True)
    assert "would exceed your storage quota" in r.content.decode()
    assert not LocalModel.objects.exists()


def _image_zip(path, n=20, side=8):
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            for cls in ("a", "b"):
                im = Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8))
                b = io.BytesIO()
                im.save(b, "PNG")
                zf.writestr(f"{cls}/{i}.png", b.getvalue())
    return path


def test_an_image_cache_larger_than_the_quota_left_is_refused_before_it_is_written(tmp_path):
    source = _image_zip(tmp_path / "imgs.zip")
    # 40 images at 512 × 512 × 3 = 31.5 MB of cache from a few KB of PNGs
    with pytest.raises(IngestError, match="more than the .* left in your storage quota"):
        ingest_image_zip(source, tmp_path / "out", image_size=512, max_cache_bytes=10 * 2**20)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    info = ingest_image_zip(source, tmp_path / "out", image_size=16, max_cache_bytes=10 * 2**20)
    assert info["num_train"] + info["num_val"] == 40


def test_the_ingest_task_passes_the_owners_remaining_quota(alice, tmp_path, settings, sent_tasks):
    from workers.adapters.tasks import ingest_dataset

    settings.TRAINYARD_USER_QUOTA_MB = 20
    data = _image_zip(tmp_path / "imgs.zip").read_bytes()
    _client(alice).post("/datasets/", {"file": SimpleUploadedFile("imgs.zip", data), "kind": "image",
                                       "image_size": "512"})
    ds = Dataset.objects.get()
    assert ingest_dataset(str(ds.pk)) == "failed"
    assert "storage quota" in IngestFailure.objects.get(pk=ds.pk).error


def _image_job(owner):
    """A succeeded job of an image model, as try_kind sees one (config.json + weights)."""
    from webapp.jobs.models import Artifact

    job = finished_job(owner)
    art = job.directory / "artifacts"
    (art / "config.json").write_text('{"architecture": "cnn", "dataset": {"kind": "image"}}')
    (art / "model.safetensors").write_bytes(b"x")
    Artifact.objects.create(job=job, name="model.safetensors", size_bytes=1, sha256="0" * 64)
    return job


def test_try_uploads_count_and_are_refused_past_the_quota(alice, settings, sent_tasks):
    job = _image_job(alice)
    settings.TRAINYARD_USER_QUOTA_MB = 1
    image = lambda: SimpleUploadedFile("x.png", b"\x89PNG" + b"\0" * 400_000)  # noqa: E731
    inference.create_prediction(alice, job, {}, image())
    used = storage.usage_bytes(alice)
    assert used["tries"] >= 400_000  # a pending try's image is the user's until answered
    inference.create_prediction(alice, job, {}, image())
    with pytest.raises(inference.TryError, match="would exceed your storage quota") as err:
        inference.create_prediction(alice, job, {}, image())
    assert err.value.status == 413
    assert Prediction.objects.count() == 2


def test_job_files_count(alice):
    before = storage.usage_bytes(alice)
    job = finished_job(alice)
    (job.directory / "checkpoints").mkdir(parents=True, exist_ok=True)
    (job.directory / "checkpoints" / "ckpt-1.pt").write_bytes(b"\0" * 100_000)
    after = storage.usage_bytes(alice)
    assert after["jobs"] - before["jobs"] >= 100_000
    assert after["total"] > before["total"]
