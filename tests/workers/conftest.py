import pytest

from tests.workers.test_training_loop import make_classification, make_regression


@pytest.fixture(scope="module")
def cls_ds(tmp_path_factory):
    return make_classification(tmp_path_factory.mktemp("cls"))


@pytest.fixture(scope="module")
def reg_ds(tmp_path_factory):
    return make_regression(tmp_path_factory.mktemp("reg"))
