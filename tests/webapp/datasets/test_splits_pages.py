"""What a user sees of splits: the upload options reach the ingest, the dataset page and API say
how many rows each split has and where the split came from (provided or seeded), and a job's
test metrics are stored, served and shown apart from validation."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests import datagen
from tests.webapp.factories import finished_job, running_job
from webapp.datasets.models import Dataset, IngestFailure
from webapp.jobs.events import append_events
from webapp.jobs.lifecycle import finish_job
from webapp.jobs.models import Job, JobEvent
from workers.adapters.reporter import Reporter
from workers.adapters.tasks import ingest_dataset
from workers.training.callbacks import TrainState

pytestmark = pytest.mark.django_db


@pytest.fixture
def page(alice):
    c = Client()
    c.force_login(alice)
    return c


def upload(client, path, **fields) -> Dataset:
    r = client.post("/datasets/", {"file": SimpleUploadedFile(path.name, path.read_bytes()), **fields})
    assert r.status_code == 302, r.content.decode()[:2000]
    ds = Dataset.objects.latest("created_at")
    assert ingest_dataset(str(ds.pk)) == "ready", IngestFailure.objects.values_list("error", flat=True).first()
    ds.refresh_from_db()
    return ds


def test_provided_split_on_the_page_and_in_the_api(page, sent_tasks, tmp_path):
    ds = upload(page, datagen.table_csv(tmp_path / "t.csv", n=100, split=True))
    html = page.get(f"/datasets/{ds.pk}/").content.decode()
    assert ('<span class="big">70</span> train / <span class="big">20</span> validation / '
            '<span class="big">10</span> test') in html
    assert ("provided: the file's <code>split</code> column — 70 train, 20 validation, 10 test "
            "(evaluated once, on the final model)") in html
    assert "split=train" not in html  # not a feature
    info = page.get(f"/api/datasets/{ds.pk}/").json()["info"]
    assert info["splits"] == {"source": "provided", "column": "split", "train": 70, "val": 20, "test": 10}


def test_seeded_split_with_a_test_fraction_from_the_form(page, sent_tasks, tmp_path):
    ds = upload(page, datagen.table_csv(tmp_path / "t.csv", n=100), test_fraction="0.1", seed="3")
    assert ds.options == {"val_fraction": 0.2, "seed": 3, "test_fraction": 0.1}
    html = page.get(f"/datasets/{ds.pk}/").content.decode()
    assert "seeded random split, stratified by class (0.2 validation, 0.1 test, seed 3) — 70 train, 20 validation, " \
           "10 test" in html
    assert ds.info["splits"] == {"source": "seeded", "train": 70, "val": 20, "test": 10, "val_fraction": 0.2,
                                 "test_fraction": 0.1, "seed": 3}


def test_split_column_option_through_the_api(alice, sent_tasks, tmp_path):
    c = Client()
    c.force_login(alice)
    rows = "".join(f"{i},{'ab'[i % 2]},{datagen.split_of(i)}\n" for i in range(40))
    path = tmp_path / "t.csv"
    path.write_text("x,label,fold\n" + rows)
    r = c.post("/api/datasets/", {"file": SimpleUploadedFile("t.csv", path.read_bytes()), "split_column": "fold"})
    assert r.status_code == 201, r.content
    assert r.json()["options"] == {"val_fraction": 0.2, "split_column": "fold"}
    assert ingest_dataset(r.json()["id"]) == "ready"
    ds = Dataset.objects.get()
    assert ds.info["split_column"] == "fold" and ds.info["num_test"] == 4


def test_a_bad_split_value_fails_the_ingest_with_its_line_and_keeps_nothing(page, sent_tasks, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,label,split\n1,a,train\n2,b,train\n3,a,vall\n4,b,val\n")
    page.post("/datasets/", {"file": SimpleUploadedFile("t.csv", path.read_bytes())})
    ds = Dataset.objects.get()
    assert ingest_dataset(str(ds.pk)) == "failed"
    assert not Dataset.objects.exists()
    assert "line 4: split 'vall' (column 'split') is not train, val (validation) or test" in \
        IngestFailure.objects.get().error


def test_image_folders_on_the_page(page, sent_tasks, tmp_path):
    ds = upload(page, datagen.digits_png_zip(tmp_path / "d.zip", limit=200, splits=True))
    html = page.get(f"/datasets/{ds.pk}/").content.decode()
    n = ds.info["splits"]
    assert n["source"] == "provided" and n["train"] + n["val"] + n["test"] == 200 and n["test"] >= 10
    assert (f"provided: the archive's own train/, val/ and test/ folders — {n['train']} train, {n['val']} "
            f"validation, {n['test']} test") in html.replace("&#x27;", "'")


def test_test_metrics_are_stored_served_and_shown_apart(alice, page):
    job = running_job(alice)
    finish_job(job.pk, "succeeded", metrics={"accuracy": 0.9, "loss": 0.3},
               test_metrics={"accuracy": 0.8125, "loss": 0.4, "confusion": [[1, 0], [0, 1]]})
    job.refresh_from_db()
    assert job.metrics == {"accuracy": 0.9, "loss": 0.3}
    assert job.test_metrics["accuracy"] == 0.8125
    body = page.get(f"/api/jobs/{job.pk}/").json()
    assert body["test_metrics"]["accuracy"] == 0.8125 and body["metrics"]["accuracy"] == 0.9
    html = page.get(f"/jobs/{job.pk}/").content.decode()
    assert '<div class="card" id="test-card"><h2>Test metrics</h2>' in html
    card = html.split('id="test-card"')[1].split("</table>")[0]
    assert "<tr><th>accuracy</th><td>0.8125</td></tr>" in card and "confusion" not in card


def test_a_job_without_a_test_split_hides_the_card(alice, page):
    job = finished_job(alice)
    assert Job.objects.get(pk=job.pk).test_metrics == {}
    assert '<div class="card" id="test-card" hidden>' in page.get(f"/jobs/{job.pk}/").content.decode()


def test_reporter_sends_the_test_group_once_even_after_a_restart(alice, monkeypatch):
    from webapp.jobs import events as events_mod

    monkeypatch.setattr(events_mod, "publish", lambda job_id, events: None)
    job = running_job(alice)
    state = TrainState(epochs=2, epoch=2, step=20, steps_per_epoch=10, total_steps=20)
    # A run that crashed after its last validation point: the restarted run reports the test
    # split at that same step, which the replay rule would otherwise drop.
    append_events(job.pk, [("metric", {"split": "val", "step": 20, "values": {"loss": 0.9}})])
    reporter = Reporter(job.pk, flush_seconds=0.1)
    reporter.on_log(state, reporter.control, "val", {"loss": 0.9})
    reporter.on_log(state, reporter.control, "test", {"loss": 1.1})
    reporter.flush()
    splits = [d["split"] for d in JobEvent.objects.filter(job=job, kind="metric").order_by("seq")
              .values_list("data", flat=True)]
    assert splits == ["val", "test"]
    again = Reporter(job.pk, flush_seconds=0.1)  # a third run after a crash past the test event
    again.on_log(state, again.control, "test", {"loss": 1.1})
    again.flush()
    assert JobEvent.objects.filter(job=job, kind="metric", data__split="test").count() == 1
