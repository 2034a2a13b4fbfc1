"""A sweep's definition: the experiment, its grid of variants (or the number of Optuna trials), the seeds,
and the cells they make, one run folder each. The definition is written to `sweep.json`; its name carries a
hash of what it runs, so running the same command again finds the same sweep and runs only what is missing.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from cnnlab.atomic import write_json
from cnnlab.config import Config, bounded, key_problem, name_problem, set_key, validate
from cnnlab.experiment_files import find_experiment, load_experiment
from cnnlab.errors import CnnlabError
from cnnlab.sweep.collect import show

DEFINITION = "sweep.json"


@dataclass
class Axis:
    """One axis of the grid: a key and its values, or linked keys ('optim.name,optim.lr') that move together,
    each value then a list with one entry per key."""

    key: str
    values: list

    @property
    def keys(self) -> list[str]:
        return self.key.split(",")

    def assign(self, value: Any) -> dict:
        return dict(zip(self.keys, value)) if len(self.keys) > 1 else {self.key: value}

    def order(self) -> dict[str, list]:
        """Each key's values in the order given, for sorting variants."""
        return {k: [self.assign(v)[k] for v in self.values] for k in self.keys}


@dataclass
class Cell:
    key: str  # also the run folder below runs/: "<variant>/s<seed>" or "trial-007"
    variant: dict  # grid keys and values of this cell ({} for an Optuna trial: its values are sampled)
    seed: int

    @property
    def run(self) -> str:
        return f"runs/{self.key}"

    @property
    def label(self) -> str:
        return (
            " ".join(f"{k}={show(v)}" for k, v in self.variant.items()) + f" seed {self.seed}"
            if self.variant
            else f"{self.key} seed {self.seed}"
        )


@dataclass
class SweepDef:
    name: str
    experiment: str  # the experiment file
    mode: str  # "grid" or "optuna"
    axes: list[Axis]
    seeds: list[int]
    trials: Optional[int]
    base: dict  # the experiment's resolved config (overrides applied)
    overrides: list[str]
    cells: list[Cell]
    hash: str
    command: list[str] = field(default_factory=list)
    created: str = ""
    identity: str = ""  # the sweep's identity, also held by its study in the storage (see sweep.claims)
    storage: str = ""  # the storage URL the sweep was set up with (password hidden), for messages

    def cell(self, key: str) -> Cell:
        for c in self.cells:
            if c.key == key:
                return c
        raise CnnlabError(f"sweep {self.name} has no cell {key!r}; the storage holds a different sweep")

    def config_for(self, cell: Cell, params: Optional[dict] = None) -> Config:
        """The full config of one cell: the base config, the cell's grid values, its seed, any sampled values."""
        raw = copy.deepcopy(self.base)
        values = {**cell.variant, **(params or {})}
        for key, value in values.items():
            set_key(raw, key.split("."), value, f"--grid {key}")
        raw["seed"] = cell.seed
        shown = " ".join(f"{k}={show(v)}" for k, v in values.items())
        return validate(raw, f"{self.experiment}" + (f" with {shown}" if shown else ""))

    def write(self, folder: Path) -> None:
        write_json(folder / DEFINITION, asdict(self))

    @classmethod
    def read(cls, folder: Path) -> "SweepDef":
        path = Path(folder) / DEFINITION
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise CnnlabError(
                f"{folder} is not a sweep folder (no {DEFINITION}); give a folder made by `cnnlab sweep`"
            ) from None
        raw["axes"] = [Axis(**a) for a in raw["axes"]]
        raw["cells"] = [Cell(**c) for c in raw["cells"]]
        return cls(**raw)


def parse_grid(texts: list[str]) -> list[Axis]:
    """`--grid optim.name=sgd,adam` -> Axis('optim.name', ['sgd', 'adam']); values are read as YAML, so
    `model.bn=true,false` gives booleans and `optim.betas=[0.9,0.99],[0.8,0.9]` gives two lists. Linked keys
    vary together: `--grid optim.name,optim.lr=[sgd,0.05],[adam,0.003]` makes two variants, not four."""
    axes: list[Axis] = []
    for text in texts:
        key, sep, values = text.partition("=")
        if not sep or not key or not values:
            raise CnnlabError(f"--grid '{text}' is not key=value1,value2,... (e.g. --grid optim.name=sgd,adam)")
        keys = key.split(",")
        for k in keys:
            problem = key_problem(k)
            if problem:
                raise CnnlabError(f"--grid {k}: {problem}")
        try:
            parsed = bounded(yaml.safe_load(f"[{values}]"), f"--grid {key}")
        except yaml.YAMLError:
            raise CnnlabError(f"--grid '{text}': cannot read '{values}' as a comma-separated list of values") from None
        if len(keys) > 1:
            if not all(isinstance(v, list) and len(v) == len(keys) for v in parsed):
                raise CnnlabError(
                    f"--grid '{text}': linked keys take one list per variant with a value for each key, "
                    f"e.g. --grid optim.name,optim.lr=[sgd,0.05],[adam,0.003]"
                )
            parsed = [[_number(x) for x in v] for v in parsed]
        else:
            parsed = [_number(v) for v in parsed]
        if any(set(keys) & set(a.keys) for a in axes):
            raise CnnlabError(f"--grid {key}: a key is given twice; list all its values in one --grid")
        if len({json.dumps(v, sort_keys=True) for v in parsed}) != len(parsed):
            raise CnnlabError(f"--grid '{text}' repeats a value")
        axes.append(Axis(key, parsed))
    return axes


def _number(value: Any) -> Any:
    """YAML 1.1 reads 1e-3 as a string (it wants 1.0e-3); a grid value that is a number becomes one."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
        return float(value)
    return value


def slug(variant: dict) -> str:
    """A folder name for a variant: 'optim.name=adam,model.bn=true' (characters a file system dislikes become _)."""
    text = ",".join(f"{k}={show(v)}" for k, v in variant.items()) or "base"
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)


def define(
    experiment: str,
    overrides: list[str],
    grid: list[str],
    seeds: Optional[int],
    trials: Optional[int],
    name: Optional[str] = None,
    command: Optional[list[str]] = None,
) -> SweepDef:
    """Read the experiment and the grid (or Optuna trial count) into a sweep definition; every cell's config is
    validated here, so a bad grid value stops the sweep before anything runs."""
    cfg = load_experiment(experiment, overrides)
    path = str(find_experiment(experiment))
    axes = parse_grid(grid)
    if seeds is not None and seeds < 1:
        raise CnnlabError(f"--seeds must be at least 1 (got {seeds})")
    if trials is not None:
        if axes:
            raise CnnlabError("--optuna searches the space in the experiment's search: section; give no --grid with it")
        if seeds not in (None, 1):
            raise CnnlabError(
                "--optuna runs each trial once (seed from the experiment); "
                "leave out --seeds, or sweep seeds with --grid instead"
            )
        if trials < 1:
            raise CnnlabError(f"--optuna needs a number of trials of at least 1 (got {trials})")
        if cfg.search is None:
            raise CnnlabError(
                f"--optuna needs a search: section in {path}, e.g.\n  search:\n    params:\n"
                f"      optim.lr: {{type: float, low: 0.0001, high: 0.1, log: true}}"
            )
        seed_list = [cfg.seed]
        cells = [Cell(f"trial-{i:03d}", {}, cfg.seed) for i in range(trials)]
        mode = "optuna"
    else:
        seed_list = [cfg.seed + i for i in range(3 if seeds is None else seeds)]
        combos = [
            {k: v for a, value in zip(axes, values) for k, v in a.assign(value).items()}
            for values in itertools.product(*[a.values for a in axes])
        ]
        cells = [Cell(f"{slug(v)}/s{s}", v, s) for v in combos for s in seed_list]
        mode = "grid"
    base = cfg.model_dump(mode="json")
    definition = SweepDef("", path, mode, axes, seed_list, trials, base, list(overrides), cells, "", command or [])
    configs = [definition.config_for(c).model_dump(mode="json") for c in cells]
    if mode == "optuna":
        check_search_space(definition)
    identity = json.dumps(
        {"mode": mode, "trials": trials, "cells": [[c.key, conf] for c, conf in zip(cells, configs)]}, sort_keys=True
    )
    definition.hash = hashlib.sha256(identity.encode()).hexdigest()[:16]
    definition.name = name or f"{cfg.name}-{definition.hash[:8]}"
    problem = name_problem(definition.name)
    if problem:
        raise CnnlabError(f"--name {definition.name}: {problem}")
    definition.created = time.strftime("%Y-%m-%d %H:%M:%S")
    return definition


def check_search_space(definition: SweepDef) -> None:
    """Each searched key at its bounds (or each of its choices) must still make a valid config."""
    search = definition.base["search"]
    cell = definition.cells[0]
    for key, p in search["params"].items():
        for value in p["choices"] if p["type"] == "categorical" else [p["low"], p["high"]]:
            value = int(value) if p["type"] == "int" else value
            definition.config_for(cell, {key: value})
