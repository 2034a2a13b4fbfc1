"""Sweep definitions: the grid syntax, errors that name the key, cells and the stable sweep name, and the
Optuna search section of the config."""

from __future__ import annotations

import pytest
import yaml

from cnnlab.config import validate
from cnnlab.errors import CnnlabError
from cnnlab.sweep.grid import define, parse_grid


@pytest.fixture
def exp(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "simplenn"}, "seed": 5, "train": {"epochs": 1}}))
    return str(path)


def test_grid_values_are_yaml():
    axes = parse_grid(
        ["optim.name=sgd,adam", "model.bn=true,false", "optim.betas=[0.9,0.99],[0.8,0.9]", "optim.lr=1e-3,0.01"]
    )
    assert [(a.key, a.values) for a in axes] == [
        ("optim.name", ["sgd", "adam"]),
        ("model.bn", [True, False]),
        ("optim.betas", [[0.9, 0.99], [0.8, 0.9]]),
        ("optim.lr", [0.001, 0.01]),
    ]


def test_linked_keys_vary_together(exp):
    (axis,) = parse_grid(["optim.name,optim.lr=[sgd,0.05],[adam,3e-3]"])
    assert axis.keys == ["optim.name", "optim.lr"] and axis.values == [["sgd", 0.05], ["adam", 0.003]]
    d = define(exp, [], ["optim.name,optim.lr=[sgd,0.05],[adam,3e-3]", "model.bn=true,false"], 1, None)
    assert [c.key for c in d.cells] == [
        "optim.name=sgd,optim.lr=0.05,model.bn=true/s5",
        "optim.name=sgd,optim.lr=0.05,model.bn=false/s5",
        "optim.name=adam,optim.lr=0.003,model.bn=true/s5",
        "optim.name=adam,optim.lr=0.003,model.bn=false/s5",
    ]
    assert d.config_for(d.cells[2]).optim.lr == 0.003
    with pytest.raises(CnnlabError, match="linked keys take one list per variant"):
        parse_grid(["optim.name,optim.lr=sgd,adam"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("optim.name", "is not key=value1,value2"),
        ("optim.nme=sgd", r"--grid optim.nme: 'nme' is not a key of optim \(did you mean name\?\); allowed: betas, "),
        ("optim=sgd", "'optim' is a section"),
        ("optim.name=sgd,sgd", "repeats a value"),
    ],
)
def test_grid_errors_name_the_key(text, message):
    with pytest.raises(CnnlabError, match=message):
        parse_grid([text])


def test_cells_seeds_and_a_stable_name(exp):
    d = define(exp, ["train.epochs=2"], ["optim.name=sgd,adam", "model.bn=true,false"], 3, None)
    assert len(d.cells) == 12 and d.seeds == [5, 6, 7]
    assert (
        d.cells[0].key == "optim.name=sgd,model.bn=true/s5" and d.cells[0].run == "runs/optim.name=sgd,model.bn=true/s5"
    )
    cfg = d.config_for(d.cells[-1])
    assert (cfg.optim.name, cfg.model.bn, cfg.seed, cfg.train.epochs) == ("adam", False, 7, 2)
    again = define(exp, ["train.epochs=2"], ["optim.name=sgd,adam", "model.bn=true,false"], 3, None)
    assert again.name == d.name and d.name.startswith("exp-")
    assert define(exp, [], ["optim.name=sgd,adam"], 3, None).name != d.name
    assert define(exp, [], [], None, None).seeds == [5, 6, 7]  # default: 3 seeds


def test_a_bad_grid_value_stops_the_sweep_with_file_and_key(exp):
    with pytest.raises(
        CnnlabError,
        match=r"exp.yaml with optim.name=rmsprop:\n  key 'optim.name': Input should be 'sgd', 'adam' or 'adamw'",
    ):
        define(exp, [], ["optim.name=sgd,rmsprop"], 1, None)


def test_optuna_needs_a_search_section_and_no_grid(exp):
    with pytest.raises(CnnlabError, match="--optuna needs a search: section"):
        define(exp, [], [], None, 5)
    with pytest.raises(CnnlabError, match="give no --grid"):
        define(exp, [], ["optim.name=sgd,adam"], None, 5)


def test_search_section_is_validated_like_the_rest(tmp_path):
    base = {"model": {"name": "simplenn"}}
    ok = validate(
        {
            **base,
            "search": {
                "params": {
                    "optim.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
                    "model.args.NF": {"type": "int", "low": 8, "high": 32, "step": 8},
                }
            },
        },
        "f.yaml",
    )
    assert ok.search.pruner == "median" and ok.search.metric == "val_acc"
    segment = {
        "task": "segment",
        "data": {"dataset": "pennfudan"},
        "model": {"name": "seg_unet"},
        "search": {"params": {"optim.lr": {"type": "float", "low": 1e-4, "high": 0.1}}},
    }
    assert validate(segment, "f.yaml").search.metric == "val_iou"  # the task's own metric, as best.pt's
    segment["search"]["metric"] = "val_miou"
    assert validate(segment, "f.yaml").search.metric == "val_miou"
    with pytest.raises(
        CnnlabError,
        match="search.metric val_miou: task classify does not record val_miou; choose one of val_loss, val_acc",
    ):
        validate(
            {
                **base,
                "search": {"params": {"optim.lr": {"type": "float", "low": 0.1, "high": 1}}, "metric": "val_miou"},
            },
            "f.yaml",
        )
    bad = [
        (
            {"optim.lrr": {"type": "float", "low": 0.1, "high": 1}},
            "search.params key 'optim.lrr': 'lrr' is not a key of optim",
        ),
        ({"optim.lr": {"type": "float", "low": 0.1, "high": 0.01}}, "needs low < high"),
        ({"optim.name": {"type": "categorical"}}, "needs choices"),
        ({"optim.lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "log: true needs low > 0"),
        ({"seed": {"type": "int", "low": 0.5, "high": 3}}, "whole numbers"),
    ]
    for params, message in bad:
        with pytest.raises(CnnlabError, match=message):
            validate({**base, "search": {"params": params}}, "f.yaml")
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {**base, "search": {"params": {"optim.name": {"type": "categorical", "choices": ["sgd", "rmsprop"]}}}}
        )
    )
    with pytest.raises(CnnlabError, match="with optim.name=rmsprop"):
        define(str(path), [], [], None, 3)  # each choice must make a valid config
    path.write_text(
        yaml.safe_dump(
            {**base, "search": {"params": {"optim.name": {"type": "categorical", "choices": ["sgd", "adam"]}}}}
        )
    )
    d = define(str(path), [], [], None, 3)
    assert [c.key for c in d.cells] == ["trial-000", "trial-001", "trial-002"] and d.mode == "optuna"
