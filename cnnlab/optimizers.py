"""The torch optimizer an optim config section names: one factory for the training loop and for the
training-step memory that counting measures (it sits below both, so neither imports the other)."""
from __future__ import annotations

import torch

from cnnlab.errors import CnnlabError


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """SGD (with momentum and Nesterov), Adam or AdamW, as `cfg` (an optim section) says, over the trainable
    `params`, or over parameter groups (dicts) taken as given: a group may hold parameters that are frozen now
    and unfrozen later (train.unfreeze_after); without a gradient they get no step and no state."""
    params = list(params)
    if not (params and isinstance(params[0], dict)):
        params = [{"params": [p for p in params if p.requires_grad]}]
    if not any(group["params"] for group in params):
        raise CnnlabError("the model has no trainable parameters; unfreeze at least one layer")
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
