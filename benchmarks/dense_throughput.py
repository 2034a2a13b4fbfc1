"""Training throughput of the per-pixel tasks through cnnlab's real pipeline (build_run, Trainer.train_epoch).

For each experiment: one warm-up epoch, then one timed epoch; prints one JSON line with images/s,
the estimated training GFLOP/s (6 x MACs per image) and this machine's fp32 matmul peak beside it.

    CNNLAB_DATA=../shared/data python benchmarks/dense_throughput.py [colour-cnn colour-unet seg-unet]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from cnnlab.device import matmul_peak_gflops
from cnnlab.experiment_files import load_experiment
from cnnlab.data.root import data_root
from cnnlab.engine.run_setup import build_run
from cnnlab.engine.trainer import Trainer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiments", nargs="*", default=["colour-cnn", "colour-unet", "seg-unet"])
    args = parser.parse_args()
    peak = matmul_peak_gflops()
    for name in args.experiments:
        built = build_run(load_experiment(name, ["train.epochs=2"]), data_root(None))
        trainer = Trainer(built)
        trainer.train_epoch(1)
        start = time.perf_counter()
        trainer.train_epoch(2)
        seconds = time.perf_counter() - start
        images = built.data.train.num_images
        print(
            json.dumps(
                {
                    "experiment": name,
                    "task": built.cfg.task,
                    "input_shape": list(built.data.shape),
                    "batch_size": built.cfg.train.batch_size,
                    "precision": built.cfg.train.precision,
                    "train_images": images,
                    "images_per_s": round(images / seconds, 1),
                    "macs_per_image": built.macs_per_image,
                    "train_gflop_per_s": round(6 * built.macs_per_image * images / seconds / 1e9, 1),
                    "fp32_matmul_peak_gflops": round(peak, 1),
                    "threads": torch.get_num_threads(),
                    "loadavg_1min": round(os.getloadavg()[0], 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
