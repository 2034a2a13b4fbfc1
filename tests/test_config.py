"""Configs: unknown keys, wrong types and impossible values stop a run with the key and file named; the built-in
experiments ship inside the package, a user's ./experiments comes first."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.config import apply_overrides, validate
from cnnlab.experiment_files import experiment_description, experiments_dir, find_experiment, load_experiment
from cnnlab.errors import CnnlabError

ROOT = Path(__file__).resolve().parent.parent


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


def test_every_built_in_experiment_is_valid_and_described_in_one_line():
    shipped = sorted(experiments_dir().glob("*.yaml"))
    assert experiments_dir().parent.name == "cnnlab" and len(shipped) >= 17
    descriptions = set()
    for path in shipped:
        assert load_experiment(path.stem).name == path.stem and find_experiment(path.stem) == path
        description = experiment_description(path)
        assert 20 < len(description) <= 110 and description not in descriptions, path.name
        descriptions.add(description)
    with pytest.raises(CnnlabError, match="known experiments: .*quickstart"):
        find_experiment("no-such-experiment")


def test_a_users_experiments_come_first_and_are_listed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "quickstart.yaml").write_text(
        "# My own quickstart, on the Table 1 network.\nmodel: {name: table1}\n"
    )
    (tmp_path / "experiments" / "mine.yaml").write_text("model: {name: simplenn}\n")
    assert find_experiment("quickstart").resolve() == (tmp_path / "experiments" / "quickstart.yaml").resolve()
    assert load_experiment("quickstart").model.name == "table1" and load_experiment("mine").name == "mine"
    assert find_experiment("table1-cifar10") == experiments_dir() / "table1-cifar10.yaml"
    out = CliRunner().invoke(app, ["experiments"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    lines = {line.split()[1]: line for line in out.output.splitlines() if line.startswith("│")}
    assert "My own quickstart, on the Table 1 network." in lines["quickstart"] and "built-in" not in lines["quickstart"]
    assert "mine" in lines and "built-in" in lines["table1-cifar10"]
    assert "The first thing to run" not in out.output  # the built-in quickstart is hidden by the user's


@pytest.mark.slow
def test_the_wheel_ships_the_experiments_and_templates(tmp_path):
    """`pip wheel .` of a copy of the source tree: an installed cnnlab must find its own experiments."""
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "runs",
            "sweeps",
            ".cache",
            "build",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            ".hypothesis",
        ),
    )
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "wheel"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "wheel").glob("cnnlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"cnnlab/experiments/{p.name}" for p in experiments_dir().glob("*.yaml")} <= names
    assert {"cnnlab/report/templates/page.html.j2"} <= names


@pytest.mark.parametrize(
    "override, allowed",
    [
        ("optim.lookahead.evry=5", "allowed here: decay, every, power"),
        ("search.sampler_name=tpe", "allowed here: metric, params, pruner"),
    ],
)
def test_a_typo_under_an_optional_section_lists_its_keys(override, allowed):
    """optim.lookahead and search are Optional sections: one walker unwraps them for messages and key checks."""
    from cnnlab.config import key_problem

    with pytest.raises(CnnlabError, match=allowed):
        load_experiment("quickstart", [override])
    assert "allowed: decay, every, power" in key_problem("optim.lookahead.evry")
    assert key_problem("optim.lookahead.every") is None and key_problem("search.params") is None


@pytest.mark.parametrize(
    "override, hint",
    [
        ("optim.learning_rate=0.1", "unknown key 'optim.learning_rate' (did you mean lr?)"),
        ("optim.lookahead.evry=5", "(did you mean every?)"),
        ("data.dataset=cifar", "(got 'cifar'; did you mean cifar10?)"),
        ("model.name=simplen", "nor a torchvision model (did you mean simplenn?)"),
        ("optim.lr=0.1,0.01", "`cnnlab sweep EXPERIMENT --grid optim.lr=0.1,0.01`"),
    ],
)
def test_a_misspelt_name_gets_the_closest_one(override, hint):
    with pytest.raises(CnnlabError) as error:
        load_experiment("quickstart", [override])
    assert hint in str(error.value)


def test_close_names_everywhere_a_name_is_looked_up():
    from cnnlab.config import key_problem
    from cnnlab.data.registry import lookup
    from cnnlab.models.recipe import from_spec

    with pytest.raises(CnnlabError, match=r"named 'simplenn-cifar' in .* \(did you mean simplenn-cifar10"):
        find_experiment("simplenn-cifar")
    assert "(did you mean lr?)" in key_problem("optim.learning_rate")
    with pytest.raises(CnnlabError, match=r"unknown dataset 'fashion-mnist' \(did you mean fashion_mnist\?\)"):
        lookup("fashion-mnist")
    with pytest.raises(CnnlabError, match=r"unknown layer kind 'conw' \(did you mean conv or"):
        from_spec("conw 4", {}).build((3, 8, 8))
    with pytest.raises(CnnlabError, match=r"unknown option 'afine' \(did you mean affine\?\)"):
        from_spec("conv 4 -> bn afine=0", {}).build((3, 8, 8))


def test_sweep_grid_help_shows_its_brackets():
    result = CliRunner().invoke(app, ["sweep", "--help"], env={"COLUMNS": "300"})
    assert "K1,K2=[a,1],[b,2] moves two keys together" in result.output
