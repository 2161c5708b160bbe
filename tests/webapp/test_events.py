from __future__ import annotations

import threading

import pytest
from django.db import connection

from webapp.jobs.events import append_events, events_after
from webapp.jobs.models import JobEvent
from tests.webapp.factories import running_job


@pytest.mark.django_db
def test_events_are_numbered_per_job(alice):
    a, b = running_job(alice), running_job(alice)
    append_events(a.pk, [("log", {"text": "1"}), ("log", {"text": "2"})])
    append_events(b.pk, [("log", {"text": "x"})])
    append_events(a.pk, [("log", {"text": "3"})], epoch=2)
    a.refresh_from_db()
    assert [e["seq"] for e in events_after(a, 0)] == [1, 2, 3] and a.last_seq == 3 and a.epoch == 2
    assert [e["seq"] for e in events_after(b, 0)] == [1]
    assert [e["text"] for e in events_after(a, 1)] == ["2", "3"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_lose_no_events(alice):
    """Web and worker append at the same time: every event stored, numbers 1..N without gaps."""
    job = running_job(alice)
    errors = []

    def writer(tag):
        try:
            for i in range(20):
                append_events(job.pk, [("log", {"text": f"{tag}{i}"}), ("log", {"text": f"{tag}{i}b"})])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seqs = sorted(JobEvent.objects.filter(job=job).values_list("seq", flat=True))
    assert seqs == list(range(1, 161))
