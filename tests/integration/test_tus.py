"""tus on the real stack with a standard client, `tuspy`: a file uploaded in chunks becomes a
dataset, and an upload stopped after a few chunks resumes from tuspy's own URL storage."""

from __future__ import annotations

import hashlib

import pytest
from tusclient import client as tus_client
from tusclient.storage.filestorage import FileStorage

from tests.stack import write_separable_csv

pytestmark = pytest.mark.stack


def test_tuspy_upload_becomes_a_dataset(stack, tmp_path):
    csv = write_separable_csv(tmp_path / "rows.csv", n=5000)
    tus = tus_client.TusClient(stack.url("/api/uploads/tus/"),
                               headers={"Authorization": f"Token {stack.tokens['alice']}"})
    uploader = tus.uploader(str(csv), chunk_size=32 * 1024, metadata={
        "filename": "rows.csv", "name": "by tuspy", "kind": "tabular", "create_dataset": "1"})
    uploader.upload()
    assert uploader.offset == csv.stat().st_size
    api = stack.api("alice")
    [ds] = [d for d in api.get(stack.url("/api/datasets/")).json()["datasets"] if d["name"] == "by tuspy"]
    assert (ds["name"], ds["original_filename"], ds["size_bytes"]) == ("by tuspy", "rows.csv", csv.stat().st_size)
    assert stack.wait_dataset(api, ds["id"])["status"] == "ready"
    stored = stack.data_dir / "datasets" / ds["id"] / "source.csv"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(csv.read_bytes()).hexdigest()
    # another user cannot see the dataset
    assert stack.api("bob").get(stack.url(f"/api/datasets/{ds['id']}/")).status_code == 404


def test_tuspy_resumes_from_its_url_storage(stack, tmp_path):
    csv = write_separable_csv(tmp_path / "more.csv", n=3000, seed=3)
    size = csv.stat().st_size
    storage = FileStorage(str(tmp_path / "tus-urls.json"))
    headers = {"Authorization": f"Token {stack.tokens['bob']}"}
    first = tus_client.TusClient(stack.url("/api/uploads/tus/"), headers=headers).uploader(
        str(csv), chunk_size=16 * 1024, metadata={"filename": "more.csv"}, store_url=True, url_storage=storage)
    for _ in range(3):
        first.upload_chunk()  # then the process "dies"
    assert 0 < first.offset < size
    second = tus_client.TusClient(stack.url("/api/uploads/tus/"), headers=headers).uploader(
        str(csv), chunk_size=16 * 1024, metadata={"filename": "more.csv"}, store_url=True, url_storage=storage)
    assert second.url == first.url and second.offset == first.offset  # found by fingerprint, asked by HEAD
    second.upload()
    upload_id = second.url.rstrip("/").rsplit("/", 1)[1]
    api = stack.api("bob")
    r = api.post(stack.url("/api/datasets/"), json={"upload": upload_id, "kind": "tabular"})
    assert r.status_code == 201, r.text
    assert stack.wait_dataset(api, r.json()["id"])["status"] == "ready"
    stored = stack.data_dir / "datasets" / r.json()["id"] / "source.csv"
    assert stored.read_bytes() == csv.read_bytes()
