"""Limits that hold under parallel requests: real concurrent HTTP requests against a live server
(threads, one database connection each; SQLite file or PostgreSQL by DATABASE_URL). The check
and the create are one step under the user's lock (webapp/accounts/storage.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.webapp.factories import api_token, ready_dataset
from webapp.datasets.models import UploadSession
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

N = 30


def _token(user) -> str:
    return api_token(user)


def _parallel(fn, n):
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda i: fn(i), range(n)))


def test_parallel_submits_accept_exactly_the_limit(live_server, alice, settings):
    settings.TRAINYARD_MAX_ACTIVE_JOBS_PER_USER = 20
    ds = ready_dataset(alice)
    headers = {"Authorization": f"Token {_token(alice)}"}

    def submit(i):
        return requests.post(f"{live_server.url}/api/jobs/", json={"dataset": str(ds.pk), "architecture": "mlp"},
                             headers=headers, timeout=60).status_code

    codes = _parallel(submit, N)
    assert codes.count(201) == 20 and codes.count(429) == N - 20, codes
    assert Job.objects.filter(owner=alice).count() == 20


def test_parallel_uploads_accept_exactly_what_fits(live_server, alice, settings):
    """1.26 MB of quota left, 20 parallel uploads of 0.84 MB each: exactly one fits."""
    settings.TRAINYARD_USER_QUOTA_MB = 2
    settings.TRAINYARD_MAX_OPEN_UPLOADS = 100
    ds = ready_dataset(alice)
    ds.size_bytes = 2 * 2**20 - int(1.26 * 2**20)
    ds.save(update_fields=["size_bytes"])
    headers = {"Authorization": f"Token {_token(alice)}"}

    def start(i):
        return requests.post(f"{live_server.url}/api/uploads/", json={"filename": f"f{i}.csv",
                                                                     "size": int(0.84 * 2**20)},
                             headers=headers, timeout=60)

    responses = _parallel(start, 20)
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 1 and codes.count(400) == 19, codes
    assert UploadSession.objects.filter(owner=alice).count() == 1
    refused = next(r for r in responses if r.status_code == 400).json()["error"]
    assert "would exceed your storage quota" in refused


def test_parallel_repeats_with_seeds_stay_within_the_limit(live_server, alice, settings):
    """Each "repeat with 3 seeds" needs 3 slots at once: 8 in parallel at a limit of 10 → 3 accepted whole."""
    settings.TRAINYARD_MAX_ACTIVE_JOBS_PER_USER = 10
    ds = ready_dataset(alice)
    src = Job.objects.create(owner=alice, dataset=ds, name="base", architecture="mlp", status=Job.Status.SUCCEEDED,
                             model_config={"hidden_sizes": [4]}, train_config={"epochs": 1, "seed": 0})
    headers = {"Authorization": f"Token {_token(alice)}"}

    def repeat(i):
        return requests.post(f"{live_server.url}/api/jobs/{src.pk}/repeat/", json={"n": 3}, headers=headers,
                             timeout=60).status_code

    codes = _parallel(repeat, 8)
    assert codes.count(201) == 3 and codes.count(429) == 5, codes
    assert Job.objects.filter(owner=alice, status=Job.Status.QUEUED).count() == 9
