"""Every zoo architecture is offered by the job form and the API, queues with its defaults, and
settings that cannot work on the chosen dataset are refused before anything is queued."""

from __future__ import annotations

import pytest
from django.test import Client

import models_zoo
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db

INFOS = {
    "tabular": {"kind": "tabular", "task": "classification", "input_shape": [4], "num_outputs": 3},
    "image": {"kind": "image", "task": "classification", "input_shape": [1, 28, 28], "num_outputs": 10},
    "sequence": {"kind": "sequence", "task": "classification", "input_shape": [24, 1], "num_outputs": 2},
    "text": {"kind": "text", "task": "classification", "input_shape": [32], "num_outputs": 2, "vocab_size": 50,
             "max_len": 32},
    "corpus": {"kind": "corpus", "task": "lm", "input_shape": [1], "num_outputs": 40, "vocab_size": 40},
}
ZOO = [e for e in models_zoo.REGISTRY.values() if set(e.kinds) & set(INFOS) and not e.name.startswith("hf")]
CASES = [(e.name, kind) for e in ZOO for kind in e.kinds if kind in INFOS]


def dataset(owner, kind: str) -> Dataset:
    info = {**INFOS[kind], "num_rows": 100, "num_train": 80, "num_val": 20, "classes": ["a", "b"]}
    return Dataset.objects.create(owner=owner, name=f"{kind} set", kind=kind, original_filename="x", size_bytes=1,
                                  status=Dataset.Status.READY, info=info)


@pytest.fixture
def client_alice(alice):
    c = Client()
    c.force_login(alice)
    return c


def test_every_family_is_registered():
    assert {"mlp", "cnn", "resnet", "cnn1d", "rnn", "transformer", "gpt"} <= set(models_zoo.REGISTRY)


@pytest.mark.parametrize(("arch", "kind"), CASES)
def test_form_offers_and_queues_each_architecture_with_its_defaults(client_alice, alice, sent_tasks, arch, kind):
    ds = dataset(alice, kind)
    entry = models_zoo.get(arch)
    html = client_alice.get(f"/jobs/new/?dataset={ds.pk}").content.decode()
    assert f'<option value="{arch}"' in html
    form = {"dataset": str(ds.pk), "architecture": arch, "tc_epochs": "1"}
    for f in entry.describe():
        name = f"m_{arch}__{f['name']}"
        assert f'name="{name}"' in html
        default = f["default"]
        if f["kind"] == "bool":
            if default:
                form[name] = "true"
        else:
            form[name] = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
    r = client_alice.post("/jobs/new/", form)
    assert r.status_code == 302, r.content.decode()[:3000]
    job = Job.objects.get()
    assert job.architecture == arch and job.status == "queued"
    # The settings that apply to this kind of data (an RNN on sequences has no embedding).
    assert job.model_config == models_zoo.schema.applicable_json(entry.validate({}), {"kind": kind,
                                                                                      "task": INFOS[kind]["task"]})


@pytest.mark.parametrize(("arch", "kind", "model", "field", "message"), [
    ("transformer", "sequence", {"heads": 3, "width": 64}, "model_config.heads", "must divide the width"),
    ("gpt", "corpus", {"heads": 5, "width": 64}, "model_config.heads", "must divide the width"),
    ("cnn", "image", {"channels": "8,8,8,8,8,8"}, "model_config.channels", "pooling stages need images"),
    ("cnn", "image", {"kernel_size": 4}, "model_config.kernel_size", "must be odd"),
    ("cnn1d", "sequence", {"channels": "8,8,8,8,8,8"}, "model_config.channels", ""),
    ("gpt", "image", {}, "architecture", "does not accept image"),
    ("cnn", "tabular", {}, "architecture", "does not accept tabular"),
])
def test_settings_that_cannot_work_are_refused_by_api_and_form(client_alice, alice, sent_tasks, arch, kind, model,
                                                               field, message):
    from rest_framework.test import APIClient

    ds = dataset(alice, kind)
    api = APIClient()
    api.force_authenticate(alice)
    r = api.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": arch, "model_config": model}, format="json")
    assert r.status_code == 400, r.content
    errors = r.json()["errors"]
    assert field in errors and message in errors[field], errors

    form = {"dataset": str(ds.pk), "architecture": arch, **{f"m_{arch}__{k}": str(v) for k, v in model.items()}}
    r = client_alice.post("/jobs/new/", form)
    assert r.status_code == 400
    assert Job.objects.count() == 0 and sent_tasks == []
