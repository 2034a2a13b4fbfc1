"""Read run folders (of a sweep, of several `cnnlab run`s, or single ones) and group them into variants.

A variant is the set of runs whose configs agree on the grouping keys: `--by` keys, or by default every
key whose value differs between the runs (the seed and the name aside), so that a sweep's grid is found
from its run folders alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cnnlab import metrics
from cnnlab.config import flatten, read_yaml, set_key
from cnnlab.errors import CnnlabError
from cnnlab.records import RunSummary
from cnnlab.runfolder import RunFolder

IGNORED = ("name", "seed")  # keys that never make a variant (the seed is what a variant is repeated over)
IGNORED_SECTIONS = ("search",)  # an Optuna search space is the same for all runs of a search


@dataclass
class Run:
    path: Path
    config: dict  # flattened: {"optim.lr": 0.01, ...}
    summary: RunSummary
    history: list[dict]

    @property
    def monitor(self) -> str:
        """The validation metric that picked the run's best.pt (its summary's, else its task's own)."""
        return self.summary.monitor or metrics.monitored(
            self.config.get("task", "classify"), self.config.get("train.monitor")
        )

    def best_epoch_by_monitor(self) -> int:
        """For run folders whose summary lacks best_epoch: the epoch with the best value of the run's monitor."""
        sign = 1 if metrics.mode(self.monitor) == "max" else -1
        return max(self.history, key=lambda r: sign * r.get(self.monitor, sign * float("-inf")))["epoch"]

    @property
    def status(self) -> str:
        return self.summary.status

    def value(self, metric: str, stat: str) -> Optional[float]:
        """A per-epoch metric at the last epoch ("final"), or at the epoch best.pt holds ("best": by train.monitor;
        run folders that do not record it fall back to the task's own metric). Any other key is a number of
        summary.json (dotted: sparsity.total.share_below), one per run: the same for both."""
        if not any(metric in row for row in self.history):
            return summary_numbers(self.summary.to_dict()).get(metric)
        if stat == "final":
            return self.history[-1].get(metric)
        best = self.summary.best_epoch or self.best_epoch_by_monitor()
        row = next((r for r in self.history if r["epoch"] == best), self.history[-1])
        return row.get(metric)


@dataclass
class Variant:
    name: str
    config: dict  # the grouping keys and their values
    runs: list[Run] = field(default_factory=list)


def summary_numbers(summary: dict) -> dict[str, float]:
    """The numbers of a summary.json by dotted key ({"peak": {"gflops": 90}} -> peak.gflops);
    lists and text left out."""
    return {k: v for k, v in flatten(summary).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run folders at or below each path (a run folder, a sweep folder, a runs/ folder), in path order."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise CnnlabError(f"{path} does not exist; give a sweep folder or run folders")
        if (path / "config.yaml").is_file():
            found.append(path)
            continue
        below = sorted(
            p.parent
            for p in path.rglob("config.yaml")
            if (p.parent / "checkpoints").is_dir() or (p.parent / "summary.json").exists()
        )
        if not below:
            raise CnnlabError(
                f"{path} holds no run folders (folders with config.yaml made by `cnnlab run` or `cnnlab sweep`)"
            )
        found.extend(below)
    seen: set[Path] = set()
    return [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]


def load_run(path: Path) -> Run:
    folder = RunFolder.open(path)
    summary = folder.summary() or RunSummary(name=path.parent.name, status="running")  # not one epoch yet
    return Run(folder.path, flatten(read_yaml(folder.config_path)), summary, folder.metrics())


def load_runs(paths: list[Path]) -> tuple[list[Run], list[Run]]:
    """(completed runs, the others: running, failed, pruned, stopped), from the run folders under `paths`."""
    runs = [load_run(p) for p in find_run_dirs(paths)]
    return [r for r in runs if r.status == "completed"], [r for r in runs if r.status != "completed"]


def _varies(key: str) -> bool:
    return key not in IGNORED and key.split(".")[0] not in IGNORED_SECTIONS


def setting(config: dict, key: str) -> Any:
    """The value of `key` in a flattened config; a key naming a section ('optim.lookahead', a grid may switch it
    on and off) gives the section as a dict, or None when the run has it off."""
    if key in config:
        return config[key]
    prefix = key + "."
    section: dict = {}
    for k, v in config.items():
        if k.startswith(prefix):
            set_key(section, k[len(prefix) :].split("."), v, key)
    return section or None


def differing_keys(runs: list[Run]) -> list[str]:
    """Keys whose value is not the same in every run, in the order they appear in the configs."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.config))
    return [k for k in keys if _varies(k) and len({json.dumps(r.config.get(k), sort_keys=True) for r in runs}) > 1]


def brief(value: Any) -> str:
    """A sampled value for a table: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else show(value)


def show(value: Any) -> str:
    """A config value exactly, as a person writes it: true, null, 0.003, [0.9,0.99] (names variants and folders)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def group(runs: list[Run], by: Optional[list[str]] = None, order: Optional[dict[str, list]] = None) -> list[Variant]:
    """Variants of `runs` by the keys `by` (default: the keys that differ), sorted by `order` of values where given."""
    if not runs:
        return []
    keys = list(by) if by else differing_keys(runs)
    for key in keys:
        if not any(key in r.config or setting(r.config, key) is not None for r in runs):
            known = ", ".join(differing_keys(runs)) or "none (the runs differ only in seed)"
            raise CnnlabError(f"--by {key}: no run has this config key; keys that differ between these runs: {known}")
    variants: dict[str, Variant] = {}
    for run in runs:
        config = {k: setting(run.config, k) for k in keys}
        name = " ".join(f"{k}={show(v)}" for k, v in config.items()) or str(runs[0].config.get("name", "all runs"))
        variants.setdefault(name, Variant(name, config)).runs.append(run)
    order = order or {}

    def rank(v: Variant) -> tuple:
        out = []
        for k, value in v.config.items():
            values = order.get(k, [])
            out.append((values.index(value), "") if value in values else (len(values), show(value)))
        return tuple(out)

    result = sorted(variants.values(), key=rank)
    for v in result:
        v.runs.sort(key=lambda r: (r.config.get("seed", 0), str(r.path)))
    return result
