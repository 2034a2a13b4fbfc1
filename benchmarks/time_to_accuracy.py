"""Every speed recipe's test accuracy against its training time, over seeds: the README's table.

    CNNLAB_DATA=../shared/data python benchmarks/time_to_accuracy.py [EXPERIMENT ...] [--seeds 3] [--runs-dir DIR]
    python benchmarks/time_to_accuracy.py --from-runs DIR     # the table of runs already made, nothing trained

Trains each experiment (default: the speed recipes below) once per seed, one `cnnlab run` after another,
and prints a JSON line per experiment and then a Markdown table: test accuracy at the end of training (with
the recipe's test-time augmentation; mean and range over seeds), training seconds (evaluation and startup
apart; median and largest), startup seconds (process start to the first step, median), the share of the
machine's measured matmul peak the training reached, the command that reproduces one run, and the machine
(device, threads, measured peak). Timings mean something only on an otherwise idle machine: the load average
before and after is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from cnnlab.records import RunSummary

SPEED_RECIPES = ["cifar10-cpu75", "cifar10-airbench94-muon", "cifar10-airbench94"]


def train(names: list[str], seeds: int, runs_dir: Path) -> None:
    """Each experiment once per seed, one run after another, each in a new `cnnlab run` process (as a user starts
    it, so startup includes the imports; later runs of one process would skip them)."""
    for name in names:
        for seed in range(seeds):
            command = [sys.executable, "-m", "cnnlab", "run", name, f"seed={seed}", "--runs-dir", str(runs_dir)]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def summaries(runs_dir: Path) -> dict[str, list[RunSummary]]:
    """The completed runs under `runs_dir`, by experiment name, in seed order."""
    found: dict[str, list[RunSummary]] = {}
    for path in sorted(runs_dir.rglob("summary.json")):
        summary = RunSummary.read(path)
        if summary.status == "completed" and summary.final and summary.final.get("test_acc") is not None:
            found.setdefault(summary.name, []).append(summary)
    return {name: sorted(runs, key=lambda s: s.seed or 0) for name, runs in found.items()}


def row(name: str, runs: list[RunSummary]) -> dict:
    accs = [s.final["test_acc"] for s in runs]
    train = [s.train_seconds for s in runs]
    shares = [s.final.get("peak_percent") for s in runs if s.final.get("peak_percent") is not None]
    peak = runs[0].peak or {}
    return {
        "experiment": name,
        "seeds": [s.seed for s in runs],
        "test_acc_mean": round(statistics.mean(accs), 4),
        "test_acc_min": min(accs),
        "test_acc_max": max(accs),
        "train_seconds_median": round(statistics.median(train), 1),
        "train_seconds_max": round(max(train), 1),
        "startup_seconds_median": round(statistics.median(s.startup_seconds for s in runs), 2),
        "peak_percent_median": round(statistics.median(shares), 1) if shares else None,
        "command": f"cnnlab run {name} seed=N",
        "machine": f"{runs[0].device}, {runs[0].threads} threads, {peak.get('precision', '?')} peak "
        f"{peak.get('gflops', '?')} GFLOP/s, torch {runs[0].torch}",
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| recipe | test accuracy, mean (range) | training s, median (max) | startup s | share of peak | "
        "command | machine |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        share = "" if r["peak_percent_median"] is None else f"{r['peak_percent_median']:.0f}%"
        seeds = f"{len(r['seeds'])} seed{'s' if len(r['seeds']) > 1 else ''}"
        lines.append(
            f"| `{r['experiment']}` | {100 * r['test_acc_mean']:.2f}% ({100 * r['test_acc_min']:.2f} to "
            f"{100 * r['test_acc_max']:.2f}, {seeds}) | {r['train_seconds_median']:.1f} "
            f"({r['train_seconds_max']:.1f}) | {r['startup_seconds_median']:.1f} | {share} | `{r['command']}` | "
            f"{r['machine']} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiments", nargs="*", default=SPEED_RECIPES)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs-dir", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--from-runs", type=Path, default=None, help="tabulate the runs in this folder; train nothing")
    args = parser.parse_args()
    load_before = os.getloadavg()
    runs_dir = args.from_runs
    if runs_dir is None:
        runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="cnnlab-speed-"))
        train(args.experiments or SPEED_RECIPES, args.seeds, runs_dir)
    found = summaries(runs_dir)
    names = [n for n in (args.experiments or SPEED_RECIPES) if n in found] if args.from_runs is None else sorted(found)
    rows = [row(name, found[name]) for name in names]
    for r in rows:
        print(json.dumps(r), flush=True)
    print(json.dumps({"loadavg_before": load_before, "loadavg_after": os.getloadavg(), "runs_dir": str(runs_dir)}))
    print(markdown(rows))


if __name__ == "__main__":
    main()
