import pytest


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    """Each web test gets its own data dir, so leftover-file checks see only that test's files."""
    settings.DATA_DIR = tmp_path / "data"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "data" / "tmp")
    (tmp_path / "data" / "tmp").mkdir(parents=True)
    return settings.DATA_DIR
