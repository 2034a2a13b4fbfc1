"""cnnlab's cifar10-airbench94 against airbench94 itself, side by side on one GPU, on the same CIFAR-10 pixels.

    CNNLAB_DATA=../shared/data python benchmarks/vs_airbench.py --airbench PATH/TO/airbench94.py [--runs 5]

You supply airbench94.py (KellerJordan/cifar10-airbench, legacy/airbench94.py); cnnlab ships none of its code.
Both read the images cnnlab decodes from its data root: airbench's cifar10/{train,test}.pt (uint8 NHWC images,
int64 labels) are written from cnnlab's tensor cache into a scratch folder, where airbench runs. One warm-up run
of each is discarded (CUDA start-up, cuDNN autotuning), then the two take turns, --runs times each, in this
process. Prints one JSON line: both mean test accuracies (with test-time augmentation), both mean training
times (airbench: its own timer, whitening set-up, training and final evaluation; cnnlab: summary.json's
wall_seconds, training and its evaluations, startup apart), their ratio and the issue-13 goal's verdict
(accuracy within 0.3 points, time at most 1.3x). Without a CUDA GPU it says so and stops.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from cnnlab.experiment_files import load_experiment
from cnnlab.data import load_images
from cnnlab.data.root import data_root
from cnnlab.runner import start_run

ACCURACY_GOAL = 0.003  # within 0.3 points of airbench's mean
TIME_GOAL = 1.3  # at most 1.3x airbench's mean time


def write_airbench_data(data_cfg, folder: Path) -> None:
    """cifar10/train.pt and test.pt as airbench's loader reads them, from cnnlab's decoded cache. The training
    images are put in a seeded random order first (an image folder decodes class by class, and airbench whitens
    with its first 5,000 images, which would all be airplanes)."""
    train, test, _ = load_images(data_cfg, data_root(None))
    order = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(0))
    (folder / "cifar10").mkdir(parents=True, exist_ok=True)
    for name, images, labels in (
        ("train", train.images[order], train.labels[order]),
        ("test", test.images, test.labels),
    ):
        torch.save(
            {
                "images": images.permute(0, 2, 3, 1).contiguous(),
                "labels": labels.long(),
                "classes": list(train.classes),
            },
            folder / "cifar10" / f"{name}.pt",
        )


def load_airbench(path: Path):
    """Import the user's airbench94.py as a module (its __main__ block does not run)."""
    spec = importlib.util.spec_from_file_location("airbench94_user", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def airbench_run(module, run) -> tuple[float, float]:
    """(TTA test accuracy, seconds by airbench's own timer) of one main(run); its table is kept off stdout."""
    final = {}
    print_details = module.print_training_details

    def capture(variables, is_final_entry):
        final.update(variables)
        print_details(variables, is_final_entry)

    module.print_training_details = capture
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            acc = module.main(run)
    finally:
        module.print_training_details = print_details
    return float(acc), float(final["total_time_seconds"])


def cnnlab_run(cfg, runs_dir: Path) -> tuple[float, float, float]:
    """(final test accuracy, wall seconds of training and evaluation, startup seconds) of one cnnlab run."""
    run = start_run(cfg, runs_dir, data_root(None))
    summary = run.summary()
    return summary["final"]["test_acc"], summary["wall_seconds"], summary["startup_seconds"]


def stats_of(accs: list[float], seconds: list[float]) -> dict:
    return {
        "acc_mean": round(statistics.mean(accs), 4),
        "acc_std": round(statistics.stdev(accs), 4) if len(accs) > 1 else None,
        "seconds_mean": round(statistics.mean(seconds), 3),
        "accs": [round(a, 4) for a in accs],
        "seconds": [round(s, 3) for s in seconds],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--airbench", type=Path, required=True, help="path to airbench94.py")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--experiment", default="cifar10-airbench94")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit(
            "vs_airbench.py compares GPU training times and needs a CUDA GPU; none is available here, so nothing ran"
        )
    if not args.airbench.is_file():
        sys.exit(f"--airbench {args.airbench}: no such file; give the path to airbench94.py")
    cfg = load_experiment(args.experiment, ["device=cuda"])
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="vs-airbench-"))).resolve()
    write_airbench_data(cfg.data, workdir)
    airbench = load_airbench(args.airbench.resolve())
    os.chdir(workdir)  # airbench reads cifar10/ from the working directory
    airbench_run(airbench, "warmup")
    cnnlab_run(
        cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 1, "eval_every": 1})}),
        workdir / "runs-warmup",
    )
    ours, theirs, startup = ([], []), ([], []), []
    for i in range(args.runs):
        acc, seconds = airbench_run(airbench, i)
        theirs[0].append(acc), theirs[1].append(seconds)
        acc, seconds, started = cnnlab_run(cfg.model_copy(update={"seed": i}), workdir / "runs")
        ours[0].append(acc), ours[1].append(seconds), startup.append(started)
    a, c = stats_of(*theirs), stats_of(*ours)
    ratio = c["seconds_mean"] / a["seconds_mean"]
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name(),
                "runs": args.runs,
                "experiment": args.experiment,
                "airbench": a,
                "cnnlab": {**c, "startup_seconds_median": statistics.median(startup)},
                "acc_diff": round(c["acc_mean"] - a["acc_mean"], 4),
                "time_ratio": round(ratio, 3),
                "goal_met": abs(c["acc_mean"] - a["acc_mean"]) <= ACCURACY_GOAL and ratio <= TIME_GOAL,
                "workdir": str(workdir),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
