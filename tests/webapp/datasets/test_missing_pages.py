"""Missing values as a user meets them: the upload option, the refusal that names it, the dataset
page's account of what was imputed, and a try form that lets a field be left empty only when the
ingest imputed."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests import datagen
from tests.webapp.factories import finished_job
from webapp.datasets.models import Dataset, IngestFailure
from webapp.jobs.lifecycle import file_sha256
from webapp.jobs.models import Artifact
from workers.adapters.tasks import ingest_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def page(alice):
    c = Client()
    c.force_login(alice)
    return c


def test_the_default_refusal_names_the_option(page, sent_tasks, tmp_path):
    src = datagen.table_csv(tmp_path / "t.csv", n=50, missing=0.2)
    page.post("/datasets/", {"file": SimpleUploadedFile("t.csv", src.read_bytes())})
    ds = Dataset.objects.get()
    assert ingest_dataset(str(ds.pk)) == "failed" and not Dataset.objects.exists()
    error = IngestFailure.objects.get().error
    assert "empty value" in error and "missing=impute" in error


def test_imputed_table_on_the_dataset_page(page, sent_tasks, tmp_path):
    src = datagen.table_csv(tmp_path / "t.csv", n=100, missing=0.1, split=True)
    r = page.post("/datasets/", {"file": SimpleUploadedFile("t.csv", src.read_bytes()), "missing": "impute"})
    assert r.status_code == 302
    ds = Dataset.objects.get()
    assert ds.options == {"val_fraction": 0.2, "missing": "impute"}
    assert ingest_dataset(str(ds.pk)) == "ready"
    ds.refresh_from_db()
    missing = ds.info["missing"]
    html = page.get(f"/datasets/{ds.pk}/").content.decode()
    assert '<section class="card" id="missing-values"><h2>Missing values</h2>' in html
    assert f"{missing['cells']} empty cells imputed from the training rows" in html
    for name, c in missing["columns"].items():
        assert (f"<tr><td><code>{name}</code></td><td>{c['cells']}</td><td>{c['train_cells']}</td>"
                f"<td>{c['fill']} <span class=\"muted\">({c['statistic']})</span></td>"
                f"<td><code>{c['indicator']}</code></td></tr>") in html
    api = page.get(f"/api/datasets/{ds.pk}/").json()
    assert api["info"]["missing"]["fill"] == missing["fill"]


def test_imputed_sequences_on_the_dataset_page(page, sent_tasks, tmp_path):
    src = datagen.sequence_csv(tmp_path / "s.csv", n=60, length=6, missing=0.1)
    page.post("/datasets/", {"file": SimpleUploadedFile("s.csv", src.read_bytes()), "kind": "sequence",
                             "missing": "impute"})
    ds = Dataset.objects.get()
    assert ingest_dataset(str(ds.pk)) == "ready"
    ds.refresh_from_db()
    html = page.get(f"/datasets/{ds.pk}/").content.decode()
    assert "(each step's median)" in html and "second channel" in html
    assert ds.info["input_shape"] == [6, 2]


def test_missing_is_not_an_option_of_texts(page, sent_tasks, tmp_path):
    src = datagen.sentiment_csv(tmp_path / "r.csv", n=20)
    r = page.post("/datasets/", {"file": SimpleUploadedFile("r.csv", src.read_bytes()), "kind": "text",
                                 "missing": "impute"})
    assert r.status_code == 400 and "missing is not an option of text classification datasets" in r.content.decode()
    assert not Dataset.objects.exists()


def tabular_job(owner, dataset_block: dict):
    job = finished_job(owner)
    art = job.directory / "artifacts"
    (art / "config.json").write_text(json.dumps({"architecture": "mlp", "dataset": dataset_block}))
    (art / "model.safetensors").write_bytes(b"x")
    Artifact.objects.filter(job=job).delete()
    for name in ("config.json", "model.safetensors"):
        Artifact.objects.create(job=job, name=name, size_bytes=1, sha256=file_sha256(art / name))
    return job


BLOCK = {"kind": "tabular", "task": "classification", "input_shape": [6], "classes": ["a", "b"],
         "feature_names": ["x", "colour=blue", "colour=red", "y", "x (missing)", "colour (missing)"],
         "categorical": {"colour": ["blue", "red"]}}


def test_try_form_lets_imputed_fields_be_left_empty(alice, page):
    missing = {"strategy": "impute", "fill": {"x": 1.5, "colour": "red", "y": 2.0},
               "columns": {"x": {"fill": 1.5, "cells": 3, "indicator": "x (missing)"},
                           "colour": {"fill": "red", "cells": 1, "indicator": "colour (missing)"}},
               "indicators": ["x (missing)", "colour (missing)"]}
    job = tabular_job(alice, {**BLOCK, "missing": missing})
    html = page.get(f"/jobs/{job.pk}/try/").content.decode()
    assert 'id="try-imputes"' in html
    assert '<input id="f-1" name="f:x" inputmode="decimal" placeholder="1.5">' in html
    assert '<option value="">(missing: imputed as red)</option>' in html
    assert 'name="f:x (missing)"' not in html  # the indicators are not asked for


def test_try_form_of_a_refusing_ingest_requires_every_field(alice, page):
    job = tabular_job(alice, {**BLOCK, "feature_names": BLOCK["feature_names"][:4]})
    html = page.get(f"/jobs/{job.pk}/try/").content.decode()
    assert 'id="try-imputes"' not in html
    assert '<input id="f-1" name="f:x" inputmode="decimal" required>' in html
    assert "(missing" not in html
