"""The learning-rate range test (Smith; fastai's lr_find, Lightning's Tuner.lr_find): train on the run's training
batches while the rate grows exponentially from start_lr to end_lr, record the loss, smooth it with a debiased
exponential average, stop when it diverges (over `diverge` times its lowest, or not finite), and suggest the rate
where the smoothed loss falls fastest (per decade of rate) before its minimum. One training batch per step (no
train.accumulate). The model, its optimizer and torch's global random state are put back afterwards, so a
built run can be trained as if the test had never run.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Iterator, Optional

import numpy as np
import torch

from cnnlab.engine.trainer import seed_for
from cnnlab.errors import CnnlabError

SKIP_START = 0.1  # the share of the ramp's first steps left out of the suggestion (the average is still settling)


@dataclass
class LRFind:
    lrs: list[float]
    losses: list[float]  # each step's training loss
    smoothed: list[float]  # debiased exponential average of losses
    suggestion: Optional[float]  # steepest fall of the smoothed loss before its minimum; None if too few steps
    minimum_lr: float  # where the smoothed loss was lowest (fastai's rule of thumb: a tenth of it)
    stopped: str  # why the ramp ended, in words
    start_lr: float
    end_lr: float  # the last rate tried
    steps: int  # the steps taken

    def as_dict(self) -> dict:
        return asdict(self)


def ramp(start_lr: float, end_lr: float, steps: int) -> list[float]:
    return [start_lr * (end_lr / start_lr) ** (i / max(1, steps - 1)) for i in range(steps)]


def steepest(lrs: list[float], smoothed: list[float]) -> Optional[float]:
    """The rate where the smoothed loss falls fastest against log10(rate), before the loss's minimum."""
    end = int(np.argmin(smoothed)) + 1
    start = max(1, int(SKIP_START * len(lrs)))
    if end - start < 3:
        return None
    slope = np.gradient(np.asarray(smoothed[start:end]), np.log10(lrs[start:end]))
    return float(lrs[start + int(np.argmin(slope))])


def endless_batches(built) -> Iterator:
    """The training split's batches, epoch after epoch, in the order the run's first epochs would see them."""
    epoch = 1
    while True:
        gen = torch.Generator().manual_seed(seed_for(built.cfg.seed, epoch))
        yield from built.data.train.batches(gen, epoch=epoch)
        epoch += 1


def lr_find(
    built, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100, beta: float = 0.98, diverge: float = 4.0
) -> LRFind:
    """The range test on a built run (cnnlab.engine.run_setup); its model and optimizer are restored afterwards."""
    if not 0 < start_lr < end_lr or steps < 2:
        raise CnnlabError(
            f"lr-find needs 0 < start_lr < end_lr and at least 2 steps (got {start_lr:g}, {end_lr:g}, {steps})"
        )
    model, optimizer = built.model, built.optimizer
    saved = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()), torch.get_rng_state()
    try:
        return _ramp(built, ramp(start_lr, end_lr, steps), beta, diverge)
    finally:
        model.load_state_dict(saved[0])
        optimizer.load_state_dict(saved[1])
        torch.set_rng_state(saved[2])


def _ramp(built, lrs: list[float], beta: float, diverge: float) -> LRFind:
    model, optimizer, scaler = built.model, built.optimizer, built.grad_scaler()
    model.train()
    losses, smoothed, average, stopped = [], [], 0.0, "reached end_lr"
    for i, (lr, (x, y)) in enumerate(zip(lrs, endless_batches(built))):
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        optimizer.zero_grad(set_to_none=True)
        with built.autocast():
            loss = built.task.loss(built.forward(x), y)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        average = beta * average + (1 - beta) * loss.item()
        if not math.isfinite(average):
            stopped = f"diverged at lr {lr:.3g} (the loss was not finite)"
            break
        losses.append(loss.item())
        smoothed.append(average / (1 - beta ** (i + 1)))
        if smoothed[-1] > diverge * min(smoothed):
            stopped = f"diverged at lr {lr:.3g} (the smoothed loss passed {diverge:g} times its lowest)"
            break
    if len(smoothed) < 2:
        raise CnnlabError(f"lr-find: the loss diverged at once, from {lrs[0]:g}; give a lower start_lr")
    lrs = lrs[: len(smoothed)]
    return LRFind(
        lrs,
        losses,
        smoothed,
        steepest(lrs, smoothed),
        float(lrs[int(np.argmin(smoothed))]),
        stopped,
        lrs[0],
        lrs[-1],
        len(lrs),
    )
