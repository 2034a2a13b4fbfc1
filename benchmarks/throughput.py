"""Training throughput on CIFAR-10: cnnlab's pipeline versus the way the studies did it, in one run.

cnnlab: the training split as a uint8 tensor in memory, crop and flip done per batch with tensor
ops, channels_last (and, as a second figure, bf16 autocast).
Study way: torchvision ImageFolder over the JPEG files, per-image RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor, Normalize, DataLoader(num_workers=2).

Same model, batch size, optimizer (SGD with momentum) and number of steps. Prints one JSON line
per model, with the achieved FLOP/s beside this machine's measured matmul peak.

    CNNLAB_DATA=../shared/data python benchmarks/throughput.py [--steps 100] [--models simplenn table1]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.device import matmul_peak_gflops
from cnnlab.config import validate
from cnnlab.data import prepare
from cnnlab.data.root import data_root
from cnnlab.data.archives import extract_once, find_inside
from cnnlab.data.sources import locate
from cnnlab.models import create_model


def forward_flops(model, shape) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    model.train()
    return counter.get_total_flops()


def timed_steps(model, batches, steps: int, warmup: int, bf16: bool = False, channels_last: bool = False) -> float:
    """Images per second over `steps` optimizer steps, after `warmup` steps."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    seen, start = 0, None
    it = iter(batches)
    for i in range(warmup + steps):
        if i == warmup:
            start, seen = time.perf_counter(), 0
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(batches)
            x, y = next(it)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y)
    return seen / (time.perf_counter() - start)


def cnnlab_batches(cfg, root):
    splits = prepare(cfg, root, torch.device("cpu"))

    def forever():
        epoch = 0
        while True:
            yield from splits.train.batches(torch.Generator().manual_seed(epoch))
            epoch += 1

    return splits, forever()


def study_loader(root, batch_size: int, mean, std):
    import torchvision
    from torchvision import transforms as T

    archive = locate("cifar10", root).path
    folder = find_inside(extract_once(archive) if archive.is_file() else archive, lambda f: (f / "train").is_dir())
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    dataset = torchvision.datasets.ImageFolder(str(folder / "train"), transform=transform)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=2, persistent_workers=True, drop_last=True
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["simplenn", "table1"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    root = data_root(None)
    peak = matmul_peak_gflops()
    for name in args.models:
        cfg = validate(
            {
                "name": "bench",
                "data": {"dataset": "cifar10", "augment": {"crop_padding": 4, "flip": True}},
                "model": {"name": name},
                "train": {"batch_size": args.batch_size},
            },
            "benchmark",
        )
        splits, batches = cnnlab_batches(cfg, root)
        torch.manual_seed(0)
        model = create_model(cfg.model, splits.shape, len(splits.classes))
        flops = forward_flops(model, splits.shape)
        study_model = create_model(cfg.model, splits.shape, len(splits.classes))
        study = timed_steps(
            study_model,
            study_loader(root, args.batch_size, splits.info["mean"], splits.info["std"]),
            args.steps,
            args.warmup,
        )
        fast_model = create_model(cfg.model, splits.shape, len(splits.classes)).to(memory_format=torch.channels_last)
        ours = timed_steps(fast_model, batches, args.steps, args.warmup, channels_last=True)
        bf16_model = create_model(cfg.model, splits.shape, len(splits.classes)).to(memory_format=torch.channels_last)
        ours_bf16 = timed_steps(bf16_model, batches, args.steps, args.warmup, bf16=True, channels_last=True)
        print(
            json.dumps(
                {
                    "model": name,
                    "batch_size": args.batch_size,
                    "steps": args.steps,
                    "cnnlab_images_per_s": round(ours, 1),
                    "study_images_per_s": round(study, 1),
                    "ratio": round(ours / study, 2),
                    "cnnlab_bf16_images_per_s": round(ours_bf16, 1),
                    "ratio_bf16": round(ours_bf16 / study, 2),
                    "train_gflop_per_image": round(3 * flops / 1e9, 4),
                    "cnnlab_achieved_gflops": round(3 * flops * ours / 1e9, 1),
                    "fp32_matmul_peak_gflops": round(peak, 1),
                    "threads": torch.get_num_threads(),
                    "loadavg_1min": round(os.getloadavg()[0], 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
