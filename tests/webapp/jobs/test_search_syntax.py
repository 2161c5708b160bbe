"""The jobs search syntax (webapp/jobs/search.py): a pure parser, no database."""

from __future__ import annotations

import pytest

from webapp.jobs.search import Condition, Names, SearchError, parse

NAMES = Names(train=frozenset({"learning_rate", "batch_size", "optimizer", "seed", "mixed_precision"}),
              metrics=frozenset({"accuracy", "loss", "f1"}), model=frozenset({"hidden_sizes", "dropout"}))


def test_comparisons_over_settings_and_metrics():
    q = parse("learning_rate<0.01 accuracy>0.9", NAMES)
    assert q.conditions == [Condition("train_config", "learning_rate", "<", 0.01, "learning_rate<0.01"),
                            Condition("validation", "accuracy", ">", 0.9, "accuracy>0.9")]
    assert q.words == [] and q.tags == []


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "=", "!="])
def test_every_operator(op):
    (c,) = parse(f"batch_size{op}32", NAMES).conditions
    assert (c.op, c.value, c.key) == (op, 32.0, "batch_size")


def test_prefixes_pick_the_source():
    q = parse("model.dropout>=0.1 best.loss<0.2 test.accuracy>0.8 val.f1>0.5 train.seed=3 dropout=0", NAMES)
    assert [(c.source, c.key) for c in q.conditions] == [
        ("model_config", "dropout"), ("best", "loss"), ("test", "accuracy"), ("validation", "f1"),
        ("train_config", "seed"), ("model_config", "dropout")]


def test_values_words_booleans_quotes_tags_and_free_text():
    q = parse('optimizer=adamw mixed_precision=true tag:Baseline "wide net" resnet optimizer!="sgd momentum"', NAMES)
    assert [(c.key, c.op, c.value) for c in q.conditions] == [
        ("optimizer", "=", "adamw"), ("mixed_precision", "=", True), ("optimizer", "!=", "sgd momentum")]
    assert q.tags == ["baseline"]
    assert q.words == ["wide net", "resnet"]
    assert parse("1e-3", NAMES).words == ["1e-3"]
    assert parse("learning_rate<=1e-3", NAMES).conditions[0].value == 0.001
    assert not parse("   ", NAMES) and not parse("", NAMES)


@pytest.mark.parametrize("q, message", [
    ("learning_rate<", "give a value after <"),
    ("accuracy>high", "compares numbers; “high” is not a number"),
    ("accuracy>nan", "is not a number"),
    ("<0.1", "write a comparison as name<op>value"),
    ("lerning_rate<0.1", "unknown name “lerning_rate”; did you mean learning_rate?"),
    ("model.widht=3", "no architecture has a setting widht"),
    ("train.accuracy>1", "there is no training setting accuracy"),
    ("foo.bar=1", "a prefixed name is model.X, train.X"),
    ("best.=1", "a prefixed name is"),
    ("accuracy>>0.9", "one operator per term"),
    ("accuracy=<0.9", "one operator per term"),
    ('"open quote', "a quote is not closed"),
    ("tag:", "a tag is 1 to 40"),
    ("tag:" + "x" * 41, "a tag is 1 to 40"),
    ("tag:a/b", "a tag is 1 to 40"),
    ("x " * 21, "at most 20"),
    ("a" * 501, "at most 500"),
])
def test_bad_input_says_what_is_wrong(q, message):
    with pytest.raises(SearchError) as exc:
        parse(q, NAMES)
    assert message in str(exc.value)
