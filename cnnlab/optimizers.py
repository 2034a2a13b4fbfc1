"""The torch optimizer an optim config section names: one factory for the training loop and for the
training-step memory that counting measures (it sits below both, so neither imports the other).

Parameters come in groups, each with an `lr_mult` that the training loop multiplies the scheduled rate by:
batch-norm shifts (optim.bn_bias_lr_mult) and everything else.
"""
from __future__ import annotations

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


def parameter_groups(model: nn.Module, cfg) -> list[dict]:
    """The trainable parameters in (at most) two groups: batch-norm shifts, whose rate is bn_bias_lr_mult times the
    others' and whose weight decay is divided by it (the same decay per step), then all the rest."""
    shifts = {id(m.bias) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None}
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise CnnlabError("the model has no trainable parameters; unfreeze at least one layer")
    mult, decay = cfg.bn_bias_lr_mult, torch_weight_decay(cfg)
    groups = [{"params": [p for p in params if id(p) in shifts], "lr_mult": mult, "weight_decay": decay / mult},
              {"params": [p for p in params if id(p) not in shifts], "lr_mult": 1.0, "weight_decay": decay}]
    return [g for g in groups if g["params"]] if mult != 1 else [{**groups[1], "params": params}]


def make_optimizer(model: nn.Module, cfg, batch_size: int = 1) -> torch.optim.Optimizer:
    """SGD (with momentum and Nesterov), Adam or AdamW over the trainable parameters of `model`, as `cfg` (an optim
    section) says, at the full rate for batches of `batch_size`."""
    groups, lr = parameter_groups(model, cfg), full_rate(cfg, batch_size)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=cfg.betas)
    return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas)
