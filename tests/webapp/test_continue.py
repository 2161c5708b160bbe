"""Continue training (issue 19 item 6): a new job from a finished job's last checkpoint
(webapp/jobs/services.py continue_job), its checks, and the page and API that offer it."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.webapp.factories import api_token, finished_job
from webapp.jobs import services
from webapp.jobs.models import Job


def _with_checkpoints(job, *epochs):
    folder = job.directory / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for e in epochs:
        (folder / f"ckpt-{e:06d}.pt").write_bytes(b"state of epoch %d" % e)
    return job


def test_a_continuation_starts_from_the_newest_checkpoint_with_more_epochs(alice):
    source = _with_checkpoints(finished_job(alice), 4, 5)
    source.train_config = {**source.train_config, "epochs": 5, "learning_rate": 0.01}
    source.save()
    new = services.continue_job(source, alice, 5, learning_rate=0.002)
    assert new.status == "queued" and new.owner == alice and new.dataset == source.dataset
    assert new.train_config["epochs"] == 10 and new.train_config["learning_rate"] == 0.002
    assert new.lineage == {"job": str(source.pk), "name": source.name, "checkpoint": "ckpt-000005.pt", "epoch": 5}
    copied = new.directory / "checkpoints" / "ckpt-000005.pt"
    assert copied.read_bytes() == b"state of epoch 5"
    assert sorted(p.name for p in (new.directory / "checkpoints").iterdir()) == ["ckpt-000005.pt"]
    assert (source.directory / "checkpoints" / "ckpt-000005.pt").is_file()  # the source keeps its own
    assert new.to_dict()["lineage"]["job"] == str(source.pk)


def test_what_cannot_be_continued_says_why_and_changes_nothing(alice, bob):
    queued = _with_checkpoints(finished_job(alice), 1)
    Job.objects.filter(pk=queued.pk).update(status="queued")
    queued.refresh_from_db()
    bare = finished_job(alice)  # no checkpoint
    onecycle = _with_checkpoints(finished_job(alice), 2)
    onecycle.train_config = {**onecycle.train_config, "lr_schedule": "onecycle"}
    onecycle.save()
    ok = _with_checkpoints(finished_job(alice), 3)
    before = Job.objects.count()
    cases = [
        (queued, alice, 3, None, "status", 409),
        (bare, alice, 3, None, "checkpoint", 409),
        (onecycle, alice, 3, None, "lr_schedule", 400),
        (ok, bob, 3, None, "owner", 403),
        (ok, alice, 0, None, "epochs", 400),
        (ok, alice, 3, -1.0, "learning_rate", 400),
    ]
    for job, user, epochs, lr, field, status in cases:
        with pytest.raises(services.SubmitError) as err:
            services.continue_job(job, user, epochs, lr)
        assert field in err.value.errors and err.value.status == status, (field, err.value.errors)
    assert Job.objects.count() == before


def test_the_checkpoint_copy_counts_against_the_quota(alice, settings):
    source = _with_checkpoints(finished_job(alice), 1)
    (source.directory / "checkpoints" / "ckpt-000001.pt").write_bytes(b"\0" * 3 * 2**20)
    settings.TRAINYARD_USER_QUOTA_MB = 4  # the source's own checkpoint already uses 3 of them
    before = Job.objects.count()
    with pytest.raises(services.SubmitError) as err:
        services.continue_job(source, alice, 2)
    assert err.value.status == 413 and "quota" in err.value.errors
    assert Job.objects.count() == before


def test_the_page_offers_it_and_the_api_does_it(alice, bob):
    source = _with_checkpoints(finished_job(alice), 5)
    page = Client()
    page.force_login(alice)
    html = page.get(f"/jobs/{source.pk}/").content.decode()
    assert 'id="continue-form"' in html and "5 epochs done" in html
    other = Client()
    other.force_login(bob)
    assert other.get(f"/jobs/{source.pk}/").status_code == 404
    assert other.post(f"/jobs/{source.pk}/continue/", {"epochs": "2"}).status_code == 404

    r = page.post(f"/jobs/{source.pk}/continue/", {"epochs": "2", "learning_rate": "0.0005"})
    new = Job.objects.exclude(pk=source.pk).get(lineage__job=str(source.pk))
    assert r.status_code == 302 and r["Location"] == f"/jobs/{new.pk}/"
    assert "Continues" in page.get(f"/jobs/{new.pk}/").content.decode()
    r = page.post(f"/jobs/{source.pk}/continue/", {"epochs": "two"})
    assert r.status_code == 302 and r["Location"] == f"/jobs/{source.pk}/"

    api = Client(HTTP_AUTHORIZATION=f"Token {api_token(alice)}")
    r = api.post(f"/api/jobs/{source.pk}/continue/", json.dumps({"epochs": 3}), content_type="application/json")
    assert r.status_code == 201, r.content
    assert r.json()["lineage"]["checkpoint"] == "ckpt-000005.pt" and r.json()["train_config"]["epochs"] == 8
    r = api.post(f"/api/jobs/{source.pk}/continue/", json.dumps({"epochs": 0}), content_type="application/json")
    assert r.status_code == 400 and "epochs" in r.content.decode()
    bob_api = Client(HTTP_AUTHORIZATION=f"Token {api_token(bob)}")
    r = bob_api.post(f"/api/jobs/{source.pk}/continue/", json.dumps({"epochs": 3}), content_type="application/json")
    assert r.status_code == 404
