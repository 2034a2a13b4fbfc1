"""Experiments by name: the YAML files of ./experiments and the built-in ones, looked up, listed and loaded into a
validated Config (the schema itself is cnnlab.config)."""
from __future__ import annotations

from pathlib import Path

from cnnlab.config import SHORT, Config, apply_overrides, read_yaml, validate
from cnnlab.errors import CnnlabError, did_you_mean


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


def load_experiment(name_or_path: str, overrides: list[str] = ()) -> Config:
    path = find_experiment(name_or_path)
    raw = read_yaml(path)
    raw.setdefault("name", path.stem)
    source = str(path) + (f" with overrides {SHORT.repr(' '.join(overrides))[1:-1]}" if overrides else "")
    return validate(apply_overrides(raw, list(overrides)), source)
