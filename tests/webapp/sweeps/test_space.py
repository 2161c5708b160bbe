"""A sweep's search space is checked against the settings' schema, with messages that say what to fix."""

from __future__ import annotations

import pytest

from models_zoo.schema import ConfigError
from webapp.sweeps.space import apply, direction_for, propose, validate_space


def errors_of(space, architecture="mlp") -> dict:
    with pytest.raises(ConfigError) as exc:
        validate_space(architecture, space)
    return exc.value.errors


def test_a_good_space_comes_back_clean():
    space = validate_space("mlp", {
        "train.learning_rate": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
        "train.batch_size": {"type": "int", "low": 16, "high": 128, "step": 16},
        "model.dropout": {"type": "float", "low": 0, "high": 0.5},
        "model.activation": {"type": "choice", "choices": ["relu", "gelu"]},
        "model.hidden_sizes": {"type": "choice", "choices": [[32], [64, 64]]},
        "train.nesterov": {"type": "choice", "choices": [False, True]},
    })
    assert space["train.learning_rate"] == {"type": "float", "low": 1e-4, "high": 0.1, "log": True}
    assert space["train.batch_size"] == {"type": "int", "low": 16, "high": 128, "log": False, "step": 16}
    assert space["model.dropout"]["low"] == 0.0 and space["model.hidden_sizes"]["choices"] == [[32], [64, 64]]


@pytest.mark.parametrize("space, key, message", [
    ({"train.learning_rate": {"type": "float", "low": 0.1, "high": 0.01}}, "space.train.learning_rate",
     "low (0.1) must be below high (0.01)"),
    ({"train.learning_rate": {"type": "float", "low": 0, "high": 0.1, "log": True}}, "space.train.learning_rate",
     "low: 0 is below the setting's minimum 1e-07"),
    ({"model.dropout": {"type": "float", "low": 0, "high": 0.5, "log": True}}, "space.model.dropout",
     "a log-scale range needs low above 0"),
    ({"model.dropout": {"type": "float", "low": 0.1, "high": 2}}, "space.model.dropout",
     "high: 2 is above the setting's maximum 0.9"),
    ({"train.batch_size": {"type": "int", "low": 8.5, "high": 64}}, "space.train.batch_size",
     "low must be a whole number for an int setting"),
    ({"train.batch_size": {"type": "float", "low": 8, "high": 64}}, "space.train.batch_size",
     "an int setting takes type 'int' or 'choice', not 'float'"),
    ({"train.optimizer": {"type": "choice", "choices": ["adam", "lion"]}}, "space.train.optimizer",
     "'lion' is not one of sgd, sgd_momentum, adam, adamw, rmsprop"),
    ({"train.optimizer": {"type": "int", "low": 1, "high": 2}}, "space.train.optimizer",
     "a choice setting is searched with type 'choice' only"),
    ({"train.optimizer": {"type": "choice", "choices": []}}, "space.train.optimizer", "choices must be a non-empty list"),
    ({"train.learning_rate": {"type": "float", "low": 1e-4, "high": 0.1, "lg": True}}, "space.train.learning_rate",
     "unknown keys lg (a range has low, high, log, step)"),
    ({"train.learning_rate": {"type": "uniform"}}, "space.train.learning_rate", "type must be one of float, int, choice"),
    ({"learning_rate": {"type": "float", "low": 1e-4, "high": 0.1}}, "space.learning_rate",
     "name a setting as train.<name> or model.<name>"),
])
def test_bad_ranges_are_refused_with_the_reason(space, key, message):
    assert errors_of(space) == {key: message}


def test_unknown_keys_are_refused_naming_the_known_ones():
    errors = errors_of({"train.learnin_rate": {"type": "float", "low": 1e-4, "high": 0.1},
                        "model.depth": {"type": "int", "low": 1, "high": 4}})
    assert errors["space.train.learnin_rate"].startswith("unknown setting; searchable settings of mlp are: ")
    assert "train.learning_rate" in errors["space.train.learnin_rate"]
    assert "model.dropout" in errors["space.model.depth"] and "train." not in errors["space.model.depth"]
    assert errors_of({}) == {"space": errors_of({})["space"]} and "at least one setting" in errors_of({})["space"]
    assert errors_of({"train.epochs": {"type": "int", "low": 1, "high": 3}}, "no_such_arch") == {
        "architecture": errors_of({"x": 1}, "no_such_arch")["architecture"]}


def test_the_proposed_space_lies_inside_the_schema_and_validates():
    space = propose("mlp")
    assert space["train.learning_rate"] == {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}
    assert "model.dropout" in space and space["model.dropout"]["low"] == 0.0
    assert validate_space("mlp", space) == space
    assert propose("mlp", ["train.optimizer"])["train.optimizer"]["choices"][0] == "sgd"


def test_directions_follow_the_metric_and_params_go_over_the_base():
    assert [direction_for(m) for m in ("loss", "rmse", "accuracy", "f1", "r2")] == [
        "minimize", "minimize", "maximize", "maximize", "maximize"]
    assert apply({"dropout": 0.0}, {"epochs": 3}, {"model.dropout": 0.2, "train.learning_rate": 0.01}) == (
        {"dropout": 0.2}, {"epochs": 3, "learning_rate": 0.01})
