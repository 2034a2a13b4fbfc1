"""Training speed of ResNet-18 when only part of it trains: model.trainable all, [layer4, fc] and last.

The same network (one random initialisation, copied), input size and batch for every configuration, trained
with Adam in one process; the configurations take their timed steps in turn, round after round, so that a change
in the machine's load falls on all of them alike. Frozen parts are set up by cnnlab.models.freeze.set_trainable
(requires_grad off, batch norm kept in eval mode, the frozen front run under torch.no_grad). For [layer4, fc]
and last the benchmark also times the plain way the studies freeze (requires_grad=False and frozen batch
norms put in eval mode by hand, no torch.no_grad), to show what the explicit no-grad front adds. Prints one
JSON line: images per second (median over rounds) and the ratios.

    PYTHONPATH=. python benchmarks/transfer_speed.py [--size 112] [--batch 32] [--steps 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time

import torch
from torch import nn

from cnnlab.models.freeze import set_trainable
from cnnlab.models.torchvision_models import build_for_classes

SELECTIONS = {"all": None, "layer4+fc": ["layer4", "fc"], "last": ["fc"]}


def freeze_plainly(model: nn.Module, prefixes: list[str]) -> None:
    """The usual way: parameters outside `prefixes` get requires_grad=False, their batch norms eval mode."""

    def under(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    for name, p in model.named_parameters():
        p.requires_grad_(under(name))
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not under(name):
            m.eval()


class Configuration:
    """One model copy with its trainable selection and optimizer; `step` is one timed training step."""

    def __init__(self, base: nn.Module, prefixes, plain: bool, x: torch.Tensor, y: torch.Tensor):
        self.model = copy.deepcopy(base).train()
        if plain:
            freeze_plainly(self.model, prefixes)
        else:
            set_trainable(self.model, prefixes)
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=1e-3)
        self.x, self.y = x, y
        self.step()  # warm-up: optimizer state and allocator caches exist from here on

    def step(self) -> None:
        loss = nn.functional.cross_entropy(self.model(self.x), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=112, help="input height and width")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    base = build_for_classes("resnet18", 10).module.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,), generator=gen)
    configs = {name: Configuration(base, prefixes, False, x, y) for name, prefixes in SELECTIONS.items()}
    configs.update(
        {f"{name} plain": Configuration(base, SELECTIONS[name], True, x, y) for name in ("layer4+fc", "last")}
    )
    rates = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, config in configs.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                config.step()
            rates[name].append(args.steps * args.batch / (time.perf_counter() - start))
    speed = {name: round(statistics.median(r), 1) for name, r in rates.items()}
    print(
        json.dumps(
            {
                "model": "resnet18",
                "input": [3, args.size, args.size],
                "batch": args.batch,
                "optimizer": "adam",
                "steps": args.steps,
                "rounds": args.rounds,
                "images_per_s": speed,
                "speedup_vs_all": {name: round(speed[name] / speed["all"], 2) for name in ("layer4+fc", "last")},
                "no_grad_front_vs_plain": {
                    name: round(speed[name] / speed[f"{name} plain"], 3) for name in ("layer4+fc", "last")
                },
                "threads": torch.get_num_threads(),
                "loadavg_1min": round(os.getloadavg()[0], 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
