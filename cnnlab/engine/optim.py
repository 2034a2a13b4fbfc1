"""Learning-rate schedules and the L1 penalty; the rate is a plain function of the step (nothing to checkpoint).
The optimizers themselves come from cnnlab.optimizers (counting builds the same ones)."""
from __future__ import annotations

import math

import torch


def lr_at(step: int, total_steps: int, steps_per_epoch: int, lr: float, cfg) -> float:
    """The learning rate for optimizer step `step` (0-based) of `total_steps`.

    constant; step (times gamma every step_epochs epochs); cosine (optional linear warm-up, then
    cosine down to min_lr_fraction*lr); onecycle (linear rise over warmup_fraction, default 0.25,
    then linear fall to min_lr_fraction*lr). A warm-up rises from start_lr_fraction*lr (default 0).
    """
    floor = lr * cfg.min_lr_fraction
    if cfg.name == "constant":
        return lr
    if cfg.name == "step":
        return lr * cfg.gamma ** (step // (cfg.step_epochs * steps_per_epoch))
    warm = cfg.warmup_fraction if cfg.warmup_fraction is not None else (0.25 if cfg.name == "onecycle" else 0.0)
    rise = int(warm * total_steps)
    if step < rise:
        start = cfg.start_lr_fraction
        return lr * (start + (1 - start) * (step + 1) / rise)
    progress = (step - rise) / max(1, total_steps - rise)
    if cfg.name == "cosine":
        return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return lr + (floor - lr) * progress


def l1_penalty(model: torch.nn.Module) -> torch.Tensor:
    """Sum of |w| over conv and dense weights (not biases, not batch-norm scales)."""
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]
    return sum(w.abs().sum() for w in weights if w.requires_grad)
