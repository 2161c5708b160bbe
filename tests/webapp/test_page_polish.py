"""Small things a user notices on the pages: queue wording, separators, dataset sizes, error
pages inside the layout, the Account page's name, the model card as a page, table headers,
the skip link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory

from tests.webapp.factories import finished_job, ready_dataset, running_job
from webapp.jobs.lifecycle import file_sha256
from webapp.jobs.models import Artifact, Job

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def _client(user):
    c = Client()
    c.force_login(user)
    return c


@pytest.mark.django_db
def test_a_queued_jobs_note_never_says_zero_ahead(alice, bob, client_alice):
    ds = ready_dataset(alice)
    first = Job.objects.create(owner=alice, dataset=ds, name="first", architecture="mlp")
    assert first.queue_note(0) == "waiting for a worker, next in line"
    html = client_alice.get(f"/jobs/{first.pk}/").content.decode()
    assert "Waiting for a worker, next in line." in html and "0 job" not in html
    Job.objects.filter(pk=first.pk).update(wait_reason="waiting for a GPU with 40 GB free")
    first.refresh_from_db()
    html = client_alice.get(f"/jobs/{first.pk}/").content.decode()
    assert "Waiting for a GPU with 40 GB free." in html and "queued before it" not in html
    second = Job.objects.create(owner=alice, dataset=ds, name="second", architecture="mlp", wait_reason="waiting for a GPU")
    assert second.queue_note(1) == "waiting for a GPU (1 job queued before it)"
    # Dispatched: the worker is named, and the note says so instead of "waiting for a worker".
    Job.objects.filter(pk=first.pk).update(worker_name="gpu0@box", wait_reason="")
    html = client_alice.get(f"/jobs/{first.pk}/").content.decode()
    assert "Sent to worker gpu0@box, starting." in html and "waiting for a worker" not in html.lower()
    rows = client_alice.get("/jobs/?format=json").json()["jobs"]
    assert {r["name"]: r["queue_note"] for r in rows} == {
        "first": "sent to worker gpu0@box, starting", "second": "waiting for a GPU (1 job queued before it)"}
    assert "0 ahead" not in client_alice.get("/jobs/").content.decode()


@pytest.mark.django_db
def test_the_job_pages_meta_line_has_no_empty_separators(alice, client_alice):
    job = Job.objects.create(owner=alice, dataset=ready_dataset(alice), name="q", architecture="mlp")
    html = client_alice.get(f"/jobs/{job.pk}/").content.decode()
    line = re.search(r'<p class="muted meta-line">(.*?)</p>', html, re.S).group(1)
    assert "·" not in line  # the separators are CSS, drawn only between non-empty parts
    assert line.count('class="part') == 6


@pytest.mark.django_db
def test_the_datasets_list_counts_each_kind_in_its_own_unit(alice, client_alice):
    ready_dataset(alice, "table")
    from webapp.datasets.models import Dataset

    Dataset.objects.create(owner=alice, name="tiny-shakespeare", kind="corpus", original_filename="t.txt", size_bytes=1,
                           status=Dataset.Status.READY, info={"kind": "corpus", "task": "lm", "level": "char",
                                                              "num_rows": 12345, "num_tokens": 12345})
    Dataset.objects.create(owner=alice, name="digits", kind="image", original_filename="d.zip", size_bytes=1,
                           status=Dataset.Status.READY, info={"kind": "image", "num_rows": 400})
    html = client_alice.get("/datasets/").content.decode()
    assert "12,345 characters" in html and "400 images" in html and "10 rows" in html
    assert "<th>Size</th>" in html and "<th>Rows</th>" not in html


@pytest.mark.django_db
def test_not_found_is_a_page_of_the_site(alice, client_alice, settings):
    settings.DEBUG = False
    resp = client_alice.get("/jobs/00000000-0000-0000-0000-000000000000/")
    html = resp.content.decode()
    assert resp.status_code == 404
    assert "Page not found" in html and 'aria-label="Main"' in html and 'href="/jobs/"' in html
    assert 'class="skip-link"' in html and ">Account</a>" in html
    api = client_alice.get("/api/jobs/00000000-0000-0000-0000-000000000000/")
    assert api.status_code == 404 and api["Content-Type"].startswith("application/json")  # the API stays JSON
    anon = Client().get("/no/such/page/")
    assert anon.status_code == 404 and "Page not found" in anon.content.decode()


@pytest.mark.django_db
def test_forbidden_and_server_error_pages_use_the_layout(alice, settings):
    settings.DEBUG = False
    support = get_user_model().objects.create_user("support", password="pw-support-1", is_staff=True)
    job = running_job(alice)
    resp = _client(support).post(f"/jobs/{job.pk}/cancel/")
    html = resp.content.decode()
    assert resp.status_code == 403 and "Not allowed" in html and "belongs to alice" in html
    assert 'aria-label="Main"' in html
    from webapp.api.errors import server_failure

    resp = server_failure(RequestFactory().get("/jobs/"))
    html = resp.content.decode()
    assert resp.status_code == 500 and "Something went wrong" in html and "<header" in html and 'href="/jobs/"' in html


@pytest.mark.django_db
def test_the_account_page_is_called_account(client_alice):
    html = client_alice.get("/account/profile/").content.decode()
    assert "<h1>Account</h1>" in html and "<title>Account" in html and ">API token</a>" not in html
    assert ">Account</a>" in html and "<h2>API tokens</h2>" in html


def _with_card(job, text: str):
    path = job.directory / "artifacts" / "MODEL_CARD.md"
    path.write_text(text)
    Artifact.objects.create(job=job, name="MODEL_CARD.md", size_bytes=path.stat().st_size, sha256=file_sha256(path))
    return job


@pytest.mark.django_db
def test_the_model_card_is_shown_as_markdown_with_html_escaped(alice, bob, client_alice):
    job = _with_card(finished_job(alice), "# Model card\n\n- dataset: iris\n\n| metric | value |\n|---|---|\n| accuracy | 0.9 |\n\n"
                                         "<script>alert(1)</script>\n\n[x](javascript:alert(1)) <img src=x onerror=alert(1)>\n")
    detail = client_alice.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="/jobs/{job.pk}/model-card/"' in detail
    resp = client_alice.get(f"/jobs/{job.pk}/model-card/")
    html = resp.content.decode()
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/html")
    assert "<h1>Model card</h1>" in html and "<li>dataset: iris</li>" in html and "<td>accuracy</td>" in html
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and 'href="javascript:' not in html
    assert _client(bob).get(f"/jobs/{job.pk}/model-card/").status_code == 404
    assert client_alice.get(f"/jobs/{finished_job(alice).pk}/model-card/").status_code == 404  # it has none
    # The file itself is still a download.
    assert client_alice.get(f"/jobs/{job.pk}/artifacts/MODEL_CARD.md")["Content-Disposition"].startswith("attachment")


def test_no_table_header_cell_is_empty():
    empty = re.compile(r"<th(\s[^>]*)?>\s*</th>")
    found = [str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.html") if empty.search(p.read_text())]
    assert not found, f"empty <th> (give it visually-hidden text): {found}"


@pytest.mark.django_db
def test_every_page_starts_with_a_skip_link_to_main(client_alice):
    html = client_alice.get("/jobs/").content.decode()
    body = html[html.index("<body"):]
    first_link = re.search(r"<a [^>]*>", body).group(0)
    assert 'href="#main"' in first_link and 'id="main"' in html


@pytest.mark.django_db
def test_a_queued_jobs_charts_say_no_metrics_yet(alice, client_alice):
    job = Job.objects.create(owner=alice, dataset=ready_dataset(alice), name="q", architecture="mlp")
    html = client_alice.get(f"/jobs/{job.pk}/").content.decode()
    # four metric charts and the two resource-use charts
    assert html.count('data-empty="true"') == 6 and html.count("No metrics yet.") == 4
    assert html.count("No samples yet.") == 2
    for name in ("loss", "metric", "lr", "speed"):
        assert f'id="csv-{name}"' in html and f'id="png-{name}"' in html and f'id="reset-{name}"' in html
    assert '<select id="x-axis">' in html and 'src="/static/js/chartkit.js"' in html
