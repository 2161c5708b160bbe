import pytest
from django.test import Client


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    """Each web test gets its own data dir, so leftover-file checks see only that test's files."""
    settings.DATA_DIR = tmp_path / "data"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "data" / "tmp")
    (tmp_path / "data" / "tmp").mkdir(parents=True)
    return settings.DATA_DIR


@pytest.fixture
def client_alice(alice):
    """A browser session signed in as alice (the pages tests of every package use it)."""
    c = Client()
    c.force_login(alice)
    return c
