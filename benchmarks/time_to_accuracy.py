"""Wall time for an experiment to first reach a test accuracy (default 75%), from a real run.

Trains each named experiment with `cnnlab`'s runner and prints one JSON line: the first epoch whose
test accuracy reaches the target, the seconds until then (training and per-epoch evaluation, as
recorded in metrics.jsonl), and the final accuracy.

    CNNLAB_DATA=../shared/data python benchmarks/time_to_accuracy.py cifar10-fast-a cifar10-fast-b [--target 0.75]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from cnnlab.experiment_files import load_experiment
from cnnlab.data.root import data_root
from cnnlab.runner import start_run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--target", type=float, default=0.75)
    parser.add_argument("--runs-dir", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="cnnlab-tta-"))
    for name in args.experiments:
        run = start_run(load_experiment(name), runs_dir, data_root(None))
        rows = run.metrics()
        reached = next((r for r in rows if r["test_acc"] >= args.target), None)
        upto = rows[: reached["epoch"]] if reached else rows
        print(
            json.dumps(
                {
                    "experiment": name,
                    "target": args.target,
                    "epoch_reached": reached["epoch"] if reached else None,
                    "seconds_to_target": round(sum(r["seconds"] for r in upto), 1) if reached else None,
                    "train_seconds_to_target": round(sum(r["train_seconds"] for r in upto), 1) if reached else None,
                    "final_test_acc": rows[-1]["test_acc"],
                    "epochs": len(rows),
                    "wall_seconds": run.summary()["wall_seconds"],
                    "run_dir": str(run.path),
                    "loadavg_1min": round(os.getloadavg()[0], 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
