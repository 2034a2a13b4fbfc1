"""The torch optimizer an optim config section names: one factory for the training loop and for the
training-step memory that counting measures (it sits below both, so neither imports the other).

Parameters come in groups, each with an `lr_mult` that the training loop multiplies the scheduled rate by:
a transfer model's head and body (optim.body_lr_mult), batch-norm shifts (optim.bn_bias_lr_mult), the rest.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

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
    shifts = {id(m.bias) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None}
    mult, decay = cfg.bn_bias_lr_mult, torch_weight_decay(cfg)
    out = []
    for g in groups:
        lr_mult = g.get("lr_mult", 1.0)
        if mult == 1:
            out.append({**g, "lr_mult": lr_mult, "weight_decay": decay})
            continue
        out += [{**g, "params": [p for p in g["params"] if id(p) in shifts], "lr_mult": lr_mult * mult,
                 "weight_decay": decay / mult},
                {**g, "params": [p for p in g["params"] if id(p) not in shifts], "lr_mult": lr_mult, "weight_decay": decay}]
    return [g for g in out if g["params"]]


def make_optimizer(model: nn.Module, cfg, batch_size: int = 1, groups: Optional[list[dict]] = None) -> torch.optim.Optimizer:
    """SGD (with momentum and Nesterov), Adam or AdamW, as `cfg` (an optim section) says, over `parameter_groups`,
    at the full rate for batches of `batch_size`."""
    params, lr = parameter_groups(model, cfg, groups), full_rate(cfg, batch_size)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=cfg.betas)
    return torch.optim.AdamW(params, lr=lr, betas=cfg.betas)
