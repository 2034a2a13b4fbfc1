"""Everything about optimizers, in one place: the torch optimizer an optim config section names (one factory for
the training loop and for the training-step memory that counting measures), the presets `cnnlab summary
--optimizer` names, the learning-rate schedules (a plain function of the step: nothing to checkpoint) and the
L1 penalty.

Parameters come in groups, each with an `lr_mult` that the training loop multiplies the scheduled rate by:
a transfer model's head and body (optim.body_lr_mult), batch-norm shifts (optim.bn_bias_lr_mult), the rest.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from cnnlab.config import MuonConfig, OptimConfig
from cnnlab.errors import CnnlabError


def full_rate(cfg, batch_size: int) -> float:
    """The learning rate at the schedule's peak: optim.lr, or lr*batch_size/lr_per when the rate is stated per
    lr_per examples (so a batch twice as large takes steps twice as long)."""
    return cfg.lr if cfg.lr_per is None else cfg.lr * batch_size / cfg.lr_per


def torch_weight_decay(cfg) -> float:
    """torch's weight_decay: optim.weight_decay, or weight_decay/lr when stated per lr_per examples, so that at the
    full rate a step decays the weights by weight_decay*batch_size/lr_per whatever lr is."""
    return cfg.weight_decay if cfg.lr_per is None else cfg.weight_decay / cfg.lr


def parameter_groups(model: nn.Module, cfg, groups: Optional[list[dict]] = None) -> list[dict]:
    """The parameters in groups, each with its `lr_mult` and weight decay. `groups` (dicts with params and lr_mult)
    are taken as given: they may hold parameters frozen now and unfrozen later (train.unfreeze_after), which get no
    step and no state while they have no gradient; without them, the model's trainable parameters form one group.
    Batch-norm shifts are split off each group when optim.bn_bias_lr_mult is not 1: their rate is that many times
    the group's and their weight decay is divided by it (the same decay per step)."""
    if groups is None:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr_mult": 1.0}]
    if not any(g["params"] for g in groups):
        raise CnnlabError("the model has no trainable parameters; unfreeze at least one layer")
    shifts = {
        id(m.bias) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None
    }
    mult, decay = cfg.bn_bias_lr_mult, torch_weight_decay(cfg)
    out = []
    for g in groups:
        lr_mult = g.get("lr_mult", 1.0)
        if mult == 1:
            out.append({**g, "lr_mult": lr_mult, "weight_decay": decay})
            continue
        out += [
            {
                **g,
                "params": [p for p in g["params"] if id(p) in shifts],
                "lr_mult": lr_mult * mult,
                "weight_decay": decay / mult,
            },
            {**g, "params": [p for p in g["params"] if id(p) not in shifts], "lr_mult": lr_mult, "weight_decay": decay},
        ]
    return [g for g in out if g["params"]]


def orthogonalised(g: torch.Tensor, steps: int, eps: float = 1e-7) -> torch.Tensor:
    """A matrix near U V^T for g = U S V^T, from `steps` quintic Newton-Schulz iterations in bf16 (coefficients from
    Keller Jordan's Muon: steep at zero, so a few steps bring every singular value to roughly 0.5 to 1.5)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16()
    x = x / (x.norm() + eps)  # the largest singular value at most 1
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        xxt = x @ x.T
        x = a * x + (b * xxt + c * xxt @ xxt) @ x
    return (x.T if tall else x).to(g.dtype)


class MuonSGD(torch.optim.Optimizer):
    """SGD (momentum, Nesterov, L2 weight decay: torch.optim.SGD's arithmetic) for groups without `muon`, and Muon
    for groups with `muon: True` (convolution filters): the Nesterov momentum of each filter bank, as an
    out x (in*k*k) matrix, orthogonalised and stepped by lr, the bank first rescaled to norm sqrt(out) when
    `normalize` is set. One optimizer, so the loop's rates, checkpoints and gradient scaler need nothing new."""

    def __init__(self, params, lr: float, momentum: float, nesterov: bool, muon: MuonConfig):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=0.0, muon=False)
        super().__init__(params, defaults)
        self.ns_steps, self.normalize = muon.ns_steps, muon.normalize

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            m, lr = group["momentum"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if group["muon"] else p.grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g) if m else None
                buf = state["momentum_buffer"]
                if buf is not None:
                    buf.mul_(m).add_(g)
                    g = g.add(buf, alpha=m) if group["nesterov"] else buf
                if group["muon"]:
                    if self.normalize:
                        p.mul_(p.shape[0] ** 0.5 / p.norm().clamp_min(1e-12))
                    g = orthogonalised(g.reshape(len(g), -1), self.ns_steps).view_as(p)
                p.add_(g, alpha=-lr)
        return loss


def muon_groups(groups: list[dict], muon: MuonConfig, rate: float) -> list[dict]:
    """Each group's convolution filters (4-d weights) split off as a Muon group at muon.lr (times the group's lr_mult;
    stored as an lr_mult relative to the scheduled `rate`, so the schedule moves it too), without weight decay."""
    out = []
    for g in groups:
        filters = [p for p in g["params"] if p.dim() == 4]
        out += [
            {
                **g,
                "params": filters,
                "muon": True,
                "lr_mult": g["lr_mult"] * muon.lr / rate,
                "momentum": muon.momentum,
                "nesterov": muon.nesterov,
                "weight_decay": 0.0,
            },
            {**g, "params": [p for p in g["params"] if p.dim() != 4]},
        ]
    return [g for g in out if g["params"]]


def make_optimizer(
    model: nn.Module, cfg, batch_size: int = 1, groups: Optional[list[dict]] = None
) -> torch.optim.Optimizer:
    """SGD (with momentum and Nesterov; with Muon for the filters under optim.muon), Adam or AdamW, as `cfg` (an
    optim section) says, over `parameter_groups`, at the full rate for batches of `batch_size`."""
    params, lr = parameter_groups(model, cfg, groups), full_rate(cfg, batch_size)
    if cfg.muon is not None:
        return MuonSGD(muon_groups(params, cfg.muon, lr), lr, cfg.momentum, cfg.nesterov, cfg.muon)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=cfg.betas)
    return torch.optim.AdamW(params, lr=lr, betas=cfg.betas)


OPTIMIZERS = {
    "sgd": OptimConfig(name="sgd", momentum=0.0),
    "momentum": OptimConfig(name="sgd", momentum=0.9),
    "adam": OptimConfig(name="adam"),
    "adamw": OptimConfig(name="adamw"),
}


def optimizer_label(cfg: OptimConfig) -> str:
    if cfg.name == "sgd":
        label = f"SGD with momentum {cfg.momentum}" if cfg.momentum else "SGD"
        return label if cfg.muon is None else f"{label}, Muon (momentum {cfg.muon.momentum}) on the filters"
    return {"adam": "Adam", "adamw": "AdamW"}[cfg.name]


def state_per_parameter(cfg: OptimConfig) -> int:
    """Values of optimizer state kept per trainable parameter."""
    if cfg.name == "sgd":
        return 1 if cfg.momentum or (cfg.muon is not None and cfg.muon.momentum) else 0
    return 2  # Adam's first and second moments


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
    weights = [
        m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))
    ]
    return sum(w.abs().sum() for w in weights if w.requires_grad)
