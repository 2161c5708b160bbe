"""Upload fields are checked on every path (the page's form, the API, tus metadata): a name no
kind knows, or another kind's option with a value, is refused with the list of valid names and
nothing is stored — a typo must not be silently ignored, as job settings are not."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from models_zoo import kinds
from tests.webapp.tokens import api_key
from webapp.api.views import DatasetUpload
from webapp.datasets.models import Dataset, UploadSession

pytestmark = pytest.mark.django_db

CSV = b"x1,x2,label\n" + b"".join(b"%d,%d,%s\n" % (i, i % 7, b"ab"[i % 2:i % 2 + 1]) for i in range(40))


def files_left() -> list[str]:
    root = Path(settings.DATA_DIR)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "secret" not in p.name)


def nothing_stored(sent_tasks) -> bool:
    return not Dataset.objects.exists() and not UploadSession.objects.exists() and sent_tasks == [] \
        and not [f for f in files_left() if f.startswith(("datasets/", "uploads/sessions/"))]


@pytest.fixture
def page(alice):
    c = Client()
    c.force_login(alice)
    return c


@pytest.fixture
def api(alice):
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {api_key(alice)}")
    return c


def test_every_kind_option_is_an_upload_field_of_the_api():
    assert set(kinds.option_names()) <= set(DatasetUpload().fields)
    assert "seed" in kinds.option_names()


def test_api_refuses_unknown_fields_with_the_valid_names(api, sent_tasks):
    r = api.post("/api/datasets/", {"file": SimpleUploadedFile("d.csv", CSV), "seed": "42", "split_colum": "split",
                                    "lable_column": "y"})
    assert r.status_code == 400, r.content
    body = r.json()
    assert set(body["errors"]) == {"split_colum", "lable_column"}
    assert "did you mean 'label_column'?" in body["error"]
    assert "label_column" in body["fields"] and "val_fraction" in body["fields"] and "file" in body["fields"]
    assert "the upload fields are: file, upload, project, name, description, kind, " in body["error"]
    assert nothing_stored(sent_tasks)


def test_api_stores_a_known_option_it_used_to_ignore(api, sent_tasks):
    r = api.post("/api/datasets/", {"file": SimpleUploadedFile("d.csv", CSV), "seed": "42"})
    assert r.status_code == 201, r.content
    assert r.json()["options"] == {"val_fraction": 0.2, "seed": 42}


def test_api_refuses_another_kinds_option_with_a_value(api, sent_tasks):
    r = api.post("/api/datasets/", {"file": SimpleUploadedFile("d.csv", CSV), "image_size": "32"})
    assert r.status_code == 400
    assert "image_size is not an option of tabular datasets" in r.json()["error"]
    assert nothing_stored(sent_tasks)
    # at their defaults, other kinds' fields are what a form sends anyway
    r = api.post("/api/datasets/", {"file": SimpleUploadedFile("d.csv", CSV), "channels": "auto", "level": "char"})
    assert r.status_code == 201, r.content


def test_api_json_body_with_an_upload_id_refuses_unknown_fields(api, sent_tasks):
    session = api.post("/api/uploads/", {"filename": "d.csv", "size": len(CSV)}, format="json").json()
    r = api.post("/api/datasets/", {"upload": session["id"], "valfraction": 0.3}, format="json")
    assert r.status_code == 400 and r.json()["errors"] == {"valfraction": "unknown field"}
    assert "did you mean 'val_fraction'?" in r.json()["error"]
    assert not Dataset.objects.exists() and sent_tasks == []


def test_page_refuses_unknown_fields(page, sent_tasks):
    r = page.post("/datasets/", {"file": SimpleUploadedFile("d.csv", CSV), "split_colum": "split"})
    assert r.status_code == 400
    html = r.content.decode().replace("&#x27;", "'")
    assert "unknown field 'split_colum'" in html and "the upload fields are: csrfmiddlewaretoken, file, upload" in html
    assert nothing_stored(sent_tasks)


def test_page_accepts_every_kinds_fields_at_their_defaults(page, sent_tasks):
    # What the form sends with "detect from the file": every field, empty or at its first choice.
    fields = {"kind": "auto", "name": "", "label_column": "", "text_column": "", "task": "auto", "image_size": "",
              "channels": "auto", "level": "char", "val_fraction": "", "seed": "", "description": ""}
    r = page.post("/datasets/", {"file": SimpleUploadedFile("d.csv", CSV), **fields})
    assert r.status_code == 302, r.content.decode()[:2000]
    assert Dataset.objects.get().options == {"val_fraction": 0.2}


def tus_meta(**values) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


@pytest.mark.parametrize(("values", "words"), [
    ({"split_colum": "split"}, "unknown field 'split_colum'"),
    ({"kind": "tabular", "channels": "rgb"}, "channels is not an option of tabular datasets"),
    ({"kind": "tabular", "val_fraction": "2"}, "validation fraction"),
])
def test_tus_refuses_bad_dataset_metadata_before_any_byte(api, sent_tasks, values, words):
    r = api.post("/api/uploads/tus/", HTTP_TUS_RESUMABLE="1.0.0", HTTP_UPLOAD_LENGTH=str(len(CSV)),
                 HTTP_UPLOAD_METADATA=tus_meta(filename="d.csv", filetype="text/csv", create_dataset="1", **values))
    assert r.status_code == 400, r.content
    assert words in r.json()["error"]
    if "unknown" in words:
        assert "filename, filetype, create_dataset, project, name" in r.json()["error"]
    assert nothing_stored(sent_tasks)


def test_tus_without_create_dataset_keeps_any_metadata(api):
    # The dataset's fields come with the later POST; a generic client's own keys are fine here.
    r = api.post("/api/uploads/tus/", HTTP_TUS_RESUMABLE="1.0.0", HTTP_UPLOAD_LENGTH=str(len(CSV)),
                 HTTP_UPLOAD_METADATA=tus_meta(filename="d.csv", relativePath="x/d.csv"))
    assert r.status_code == 201
