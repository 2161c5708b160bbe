"""The TensorBoard export: a .tar.gz of event files that tensorboard's own reader loads back as
exactly the stored history (tag, step, value, original wall time); other users get 404."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from django.test import Client
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from tests.webapp.exports.conftest import TRAIN_EVENTS, VAL_EVENTS, stored_points
from tests.webapp.factories import api_token, running_job
from webapp.accounts.models import AuditEvent
from webapp.exports.tensorboard import folder_name
from webapp.jobs.events import append_events


def _download(client, job, tmp_path):
    r = client.get(f"/api/jobs/{job.pk}/exports/tensorboard/")
    assert r.status_code == 200, r.content[:300]
    assert r["Content-Type"] == "application/gzip"
    assert "attachment" in r["Content-Disposition"] and ".tar.gz" in r["Content-Disposition"]
    data = b"".join(r.streaming_content)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = tar.getnames()
        tar.extractall(tmp_path, filter="data")
    return names


def _read_back(run_dir) -> dict[str, list]:
    acc = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})  # 0: keep every point
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def test_event_files_read_back_as_the_stored_history(client_alice, job, tmp_path):
    names = _download(client_alice, job, tmp_path)
    top = folder_name(job)
    assert top.startswith("iris_mlp-")
    assert sorted(n.rsplit("/", 1)[0] for n in names) == [f"{top}/train", f"{top}/val"]

    expected = stored_points(job)
    assert len(expected[("train", "loss")]) == TRAIN_EVENTS and len(expected[("val", "accuracy")]) == VAL_EVENTS
    assert len(expected[("val", "loss")]) == VAL_EVENTS + 1  # the factory's point, stored without `t`
    got = {}
    for split in ("train", "val"):
        for tag, events in _read_back(tmp_path / top / split).items():
            got[(split, tag)] = [(e.step, e.wall_time, e.value) for e in events]
    assert set(got) == set(expected)  # `note` and `improved` (not numbers) are not metrics
    for key, points in expected.items():
        # Steps and wall times exact; TensorBoard stores scalars as 32-bit floats.
        assert [(s, t) for s, t, _ in got[key]] == [(s, t) for s, t, _ in points], key
        assert [v for _, _, v in got[key]] == [float(np.float32(v)) for _, _, v in points], key
    assert AuditEvent.objects.filter(action="job.export_tensorboard", object_id=str(job.pk)).exists()


def test_the_api_token_works_and_other_users_get_404(job, bob, staff, tmp_path):
    alice_api = Client(HTTP_AUTHORIZATION=f"Token {api_token(job.owner)}")
    assert alice_api.get(f"/api/jobs/{job.pk}/exports/tensorboard/").status_code == 200
    bob_api = Client(HTTP_AUTHORIZATION=f"Token {api_token(bob)}")
    r = bob_api.get(f"/api/jobs/{job.pk}/exports/tensorboard/")
    assert r.status_code == 404 and r.json()["detail"]
    assert not AuditEvent.objects.filter(action="job.export_tensorboard", actor=bob).exists()
    assert Client().get(f"/api/jobs/{job.pk}/exports/tensorboard/").status_code in (401, 403)
    assert bob_api.get("/api/jobs/00000000-0000-0000-0000-000000000000/exports/tensorboard/").status_code == 404
    staff_client = Client()
    staff_client.force_login(staff)  # staff see every job, so may read its history
    assert staff_client.get(f"/api/jobs/{job.pk}/exports/tensorboard/").status_code == 200


def test_a_running_job_exports_its_history_so_far_and_an_empty_one_a_folder(client_alice, alice, tmp_path):
    job = running_job(alice)
    names = _download(client_alice, job, tmp_path / "empty")
    assert names == [folder_name(job)]
    append_events(job.pk, [("metric", {"split": "train", "step": 5, "values": {"loss": 1.5}})])  # no `t`
    _download(client_alice, job, tmp_path / "one")
    (event,) = _read_back(tmp_path / "one" / folder_name(job) / "train")["loss"]
    stored = job.events.get(kind="metric")
    assert (event.step, event.value) == (5, 1.5)
    assert event.wall_time == pytest.approx(stored.created_at.timestamp())  # the stored time stands in


def test_the_download_leaves_no_file_behind(client_alice, job, data_dir):
    before = {p for p in data_dir.rglob("*") if p.is_file()}
    r = client_alice.get(f"/api/jobs/{job.pk}/exports/tensorboard/")
    b"".join(r.streaming_content)
    r.close()
    assert {p for p in data_dir.rglob("*") if p.is_file()} == before


@pytest.mark.django_db(transaction=True)  # the archive is built in another thread, on its own connection
def test_under_asgi_the_archive_is_built_and_sent_off_the_shared_view_thread(alice, tmp_path, monkeypatch):
    import threading

    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    import webapp.exports.tensorboard as tb
    from tests.webapp.factories import finished_job

    import webapp.exports.services as services

    job = finished_job(alice)
    threads = {}
    build, record = tb.build_archive, services.audit.record
    monkeypatch.setattr(tb, "build_archive", lambda j: threads.setdefault("build", threading.get_ident()) and build(j))
    monkeypatch.setattr(services.audit, "record",  # called by the view, in Django's thread for sync views
                        lambda *a, **kw: threads.setdefault("view", threading.get_ident()) and record(*a, **kw))

    async def download():
        client = AsyncClient()
        await client.aforce_login(alice)
        response = await client.get(f"/api/jobs/{job.pk}/exports/tensorboard/")
        body = b"".join([chunk async for chunk in response.streaming_content])
        return response, body

    response, body = async_to_sync(download)()
    assert response.status_code == 200 and response["Content-Type"] == "application/gzip"
    assert f'filename="tensorboard-{folder_name(job)}.tar.gz"' in response["Content-Disposition"]
    assert threads["build"] != threads["view"]
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    assert [(e.step, e.value) for e in _read_back(tmp_path / folder_name(job) / "val")["loss"]] == [(1, 0.5)]
