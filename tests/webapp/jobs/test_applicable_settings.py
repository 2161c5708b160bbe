"""A job stores only the settings that apply (models_zoo.schema.settle at submit), refuses a value
of the user's own for one that does not, shows only those on its page, and older jobs (which
stored every field) still clone, continue and show."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.webapp.factories import api_token, ready_dataset, worker
from webapp.jobs import services
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


def _images(owner):
    ds = ready_dataset(owner, "digits")
    ds.kind = "image"
    ds.info = {**ds.info, "kind": "image", "num_train": 800, "image_size": 16, "channels": "L",
               "input_shape": [1, 16, 16]}
    ds.save()
    return ds


def test_stored_settings_are_the_applicable_ones(alice, sent_tasks):
    ds = ready_dataset(alice)  # tabular classification; no worker online: CUDA not known
    job = services.submit_job(alice, ds, "mlp", {}, {"optimizer": "adam", "lr_schedule": "constant", "epochs": 2})
    tc = job.train_config
    assert tc["optimizer"] == "adam" and tc["epochs"] == 2 and "label_smoothing" in tc
    for name in ("momentum", "nesterov", "step_epochs", "step_gamma", "regression_loss", "augment", "cutout",
                 "crop_padding", "mixup_alpha"):
        assert name not in tc, name
    assert "mixed_precision" in tc  # no live worker: whether CUDA is there is not known yet


def test_a_cpu_only_cluster_gets_no_mixed_precision_a_gpu_one_does(alice, sent_tasks):
    ds = ready_dataset(alice)
    worker("cpu@h")
    job = services.submit_job(alice, ds, "mlp", {}, {"epochs": 1})
    assert "mixed_precision" not in job.train_config
    with pytest.raises(services.SubmitError) as exc:
        services.submit_job(alice, ds, "mlp", {}, {"epochs": 1, "mixed_precision": "off"})
    assert "CUDA" in exc.value.errors["train_config.mixed_precision"]
    worker("gpu@h", gpus=[{"name": "A100", "memory": 40 << 30}])
    assert services.submit_job(alice, ds, "mlp", {}, {"epochs": 1}).train_config["mixed_precision"] == "auto"


def test_a_value_for_a_setting_that_does_not_apply_is_refused_and_nothing_is_stored(alice, sent_tasks):
    ds = ready_dataset(alice)
    with pytest.raises(services.SubmitError) as exc:
        services.submit_job(alice, ds, "mlp", {}, {"optimizer": "adam", "momentum": 0.5})
    assert "Optimizer is SGD + momentum or RMSprop (here: Adam)" in exc.value.errors["train_config.momentum"]
    with pytest.raises(services.SubmitError) as exc:
        services.submit_job(alice, ds, "mlp", {}, {"regression_loss": "mae"})
    assert "regression datasets (this one is classification)" in exc.value.errors["train_config.regression_loss"]
    assert not Job.objects.exists()
    # The same value at its default is dropped, not refused.
    job = services.submit_job(alice, ds, "mlp", {}, {"optimizer": "adam", "momentum": 0.9, "regression_loss": "mse"})
    assert "momentum" not in job.train_config and "regression_loss" not in job.train_config


def test_lenet_stores_only_dropout(alice, sent_tasks):
    ds = _images(alice)
    job = services.submit_job(alice, ds, "cnn", {"preset": "lenet", "dropout": 0.2, "channels": "32,64"}, {"epochs": 1})
    assert job.model_config == {"preset": "lenet", "dropout": 0.2}
    with pytest.raises(services.SubmitError) as exc:
        services.submit_job(alice, ds, "cnn", {"preset": "lenet", "kernel_size": 5}, {"epochs": 1})
    assert "Preset is Custom conv stack" in exc.value.errors["model_config.kernel_size"]


def test_the_api_refuses_too(alice, sent_tasks):
    ds = ready_dataset(alice)
    api = Client()
    api.defaults["HTTP_AUTHORIZATION"] = f"Token {api_token(alice)}"
    r = api.post("/api/jobs/", {"dataset": str(ds.pk), "architecture": "mlp",
                                "train_config": {"lr_schedule": "cosine", "step_gamma": 0.5}},
                 content_type="application/json")
    assert r.status_code == 400 and "Step decay" in r.content.decode()
    assert not Job.objects.exists()


def test_old_jobs_show_continue_and_clone_with_the_applicable_settings_only(alice, sent_tasks):
    ds = ready_dataset(alice)
    old = Job.objects.create(owner=alice, dataset=ds, name="old", architecture="mlp", status=Job.Status.SUCCEEDED,
                             model_config={"hidden_sizes": [4]},
                             train_config={"epochs": 1, "optimizer": "adam", "momentum": 0.5, "nesterov": False,
                                           "lr_schedule": "constant", "step_epochs": 10, "regression_loss": "mse"})
    c = Client()
    c.force_login(alice)
    page = c.get(f"/jobs/{old.pk}/").content.decode()
    hparams = page[page.index('id="hparams"'):]
    assert "<th>optimizer</th>" in hparams and "<th>momentum</th>" not in hparams
    assert "<th>step_epochs</th>" not in hparams and "<th>regression_loss</th>" not in hparams
    assert c.get(f"/jobs/new/?clone={old.pk}").status_code == 200
    # Continuing it: the momentum it stored did nothing, so it is dropped, not refused.
    folder = old.directory / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "ckpt-000001.pt").write_bytes(b"x")
    new = services.continue_job(old, alice, 2)
    assert new.train_config["epochs"] == 3 and "momentum" not in new.train_config


def test_the_form_marks_each_rule_and_the_image_default(alice):
    _images(alice)
    worker("cpu@h")
    c = Client()
    c.force_login(alice)
    page = c.get("/jobs/new/").content.decode()
    assert 'data-setting="momentum" data-applies="{&quot;optimizer&quot;: [&quot;sgd_momentum&quot;' in page
    assert 'data-cuda="false"' in page and 'data-default-arch="cnn"' in page


def test_a_sweep_refuses_a_setting_that_never_applies_and_drops_one_that_does_not_in_a_trial(alice, sent_tasks):
    from webapp.sweeps import services as sweeps
    from webapp.sweeps.models import Sweep

    ds = ready_dataset(alice)
    with pytest.raises(sweeps.SweepError) as exc:
        sweeps.create_sweep(alice, ds, "mlp", {"train.momentum": {"type": "float", "low": 0.5, "high": 0.95}}, "loss",
                            budget=2, concurrency=1, train_config={"epochs": 1, "optimizer": "adam"})
    assert "does nothing in this sweep" in exc.value.errors["train.momentum"] and not Sweep.objects.exists()
    # Searched beside the optimizer: each trial keeps it only where it applies.
    sweep = sweeps.create_sweep(alice, ds, "mlp", {
        "train.optimizer": {"type": "choice", "choices": ["adam", "sgd_momentum"]},
        "train.momentum": {"type": "float", "low": 0.5, "high": 0.6}}, "loss", budget=4, concurrency=4,
        train_config={"epochs": 1})
    trials = list(sweep.trials.select_related("job"))
    assert len(trials) == 4 and all(t.job is not None for t in trials)
    for t in trials:
        assert ("momentum" in t.job.train_config) == (t.job.train_config["optimizer"] == "sgd_momentum")
