"""Experiments by name: the YAML files of ./experiments and the built-in ones, looked up, listed and loaded into a
validated Config (the schema itself is cnnlab.config)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

from cnnlab.config import SHORT, Config, apply_overrides, read_yaml, validate
from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.models.user import is_user_model, locate


def experiments_dir() -> Path:
    """The built-in experiments, shipped inside the package (so an installed cnnlab has them too)."""
    return Path(__file__).resolve().parent / "experiments"


def experiment_folders() -> list[Path]:
    """Where an experiment name is looked up, first match wins: the user's ./experiments, then the built-in ones."""
    return [Path.cwd() / "experiments", experiments_dir()]


def known_experiments() -> dict[str, Path]:
    """Every experiment name with its file; a user's experiment hides a built-in one of the same name."""
    found: dict[str, Path] = {}
    for folder in experiment_folders():
        for path in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
            found.setdefault(path.stem, path)
    return found


def experiment_description(path: Path) -> str:
    """An experiment's one-line description: the first line of its file, when that is a comment."""
    first = Path(path).read_text(encoding="utf-8").split("\n", 1)[0]
    return first.lstrip("#").strip() if first.startswith("#") else ""


def find_experiment(name_or_path: str) -> Path:
    """An experiment is a YAML path, or the name of a file in ./experiments or among the built-in experiments."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if candidate.is_file():
            return candidate
        raise CnnlabError(f"experiment file {candidate} does not exist")
    known = known_experiments()
    if name_or_path in known:
        return known[name_or_path]
    raise CnnlabError(
        f"no experiment named '{name_or_path}' in {', '.join(str(f) for f in experiment_folders())}"
        f"{did_you_mean(name_or_path, known)}; "
        f"known experiments: {', '.join(sorted(known)) or 'none'} (`cnnlab experiments` describes them; "
        f"or give a path to a .yaml file)"
    )


def locate_model(raw: dict, folders: list[Path]) -> dict:
    """model.name as a file of the user's (net.py:Net) made absolute, found in the first of `folders` that holds
    it, so that the run records the file it imported and a resume from anywhere imports the same."""
    model = raw.get("model")
    if isinstance(model, dict) and isinstance(model.get("name"), str) and is_user_model(model["name"]):
        model["name"] = locate(model["name"], folders)
    return raw


def _load(raw: dict, source: str, overrides: list[str], model: Optional[str], folders: list[Path]) -> Config:
    if model is not None:  # a class handed over from Python replaces the model section
        raw["model"] = {"name": model}
    source += f" with overrides {SHORT.repr(' '.join(overrides))[1:-1]}" if overrides else ""
    return validate(locate_model(apply_overrides(raw, list(overrides)), folders), source)


def load_experiment(name_or_path: str, overrides: list[str] = (), model: Optional[str] = None) -> Config:
    """An experiment (name or YAML path) with `key=value` overrides; `model` replaces its model section."""
    path = find_experiment(name_or_path)
    raw = read_yaml(path)
    raw.setdefault("name", path.stem)
    return _load(raw, str(path), list(overrides), model, [Path.cwd(), path.parent])


def load_dict(raw: dict, overrides: list[str] = (), model: Optional[str] = None) -> Config:
    """A config given as a dict (from Python), checked exactly as a YAML file is."""
    return _load(copy.deepcopy(raw), "the config given to cnnlab", list(overrides), model, [Path.cwd()])
