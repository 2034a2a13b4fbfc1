"""Configs: unknown keys, wrong types and impossible values stop a run with the key and file named."""
import pytest

from cnnlab.config import apply_overrides, find_experiment, load_experiment, validate
from cnnlab.errors import CnnlabError


def error_of(raw):
    with pytest.raises(CnnlabError) as e:
        validate(raw, "exp.yaml")
    return str(e.value)


def test_unknown_key_lists_allowed_keys():
    msg = error_of({"model": {"name": "simplenn"}, "optim": {"lrr": 0.1}})
    assert "exp.yaml" in msg and "unknown key 'optim.lrr'" in msg
    assert "lr" in msg and "momentum" in msg


def test_wrong_type_and_impossible_value():
    assert "key 'train.epochs'" in error_of({"model": {"name": "simplenn"}, "train": {"epochs": "many"}})
    msg = error_of({"model": {"name": "simplenn"}, "optim": {"lr": -1}})
    assert "key 'optim.lr'" in msg and "greater than 0" in msg
    msg = error_of({"model": {"name": "simplenn"}, "optim": {"name": "rmsprop"}})
    assert "'sgd', 'adam' or 'adamw'" in msg


def test_model_must_be_known():
    msg = error_of({"model": {"name": "resnet9000"}})
    assert "not in the zoo (" in msg and "simplenn" in msg and "e.g. resnet18" in msg
    assert "exactly one of model.name" in error_of({"model": {}})


def test_overrides_are_typed_and_checked(tmp_path):
    exp = tmp_path / "e.yaml"
    exp.write_text("model: {name: simplenn}\n")
    cfg = load_experiment(str(exp), ["train.epochs=2", "optim.lr=0.05", "model.bn=false", "data.augment.flip=true"])
    assert cfg.train.epochs == 2 and cfg.optim.lr == 0.05 and cfg.model.bn is False and cfg.data.augment.flip
    assert cfg.name == "e"
    with pytest.raises(CnnlabError, match="with overrides train.epoch=2"):
        load_experiment(str(exp), ["train.epoch=2"])
    with pytest.raises(CnnlabError, match="not key=value"):
        apply_overrides({}, ["train.epochs"])


def test_every_shipped_experiment_is_valid():
    for name in ["quickstart", "table1-cifar10", "simplenn-cifar10", "simplenn-cifar10-aug", "cifar10-fast-a", "cifar10-fast-b"]:
        assert load_experiment(name).name == name
    with pytest.raises(CnnlabError, match="known experiments: .*quickstart"):
        find_experiment("no-such-experiment")
