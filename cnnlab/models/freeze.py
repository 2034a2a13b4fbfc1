"""Which parameters train (`model.trainable`): `all`, `last` (the head(s) only) or module-name prefixes.

Freezing a part of the network means three things, all undone by the next `set_trainable` call (so the
selection can change mid-run, `train.unfreeze_after`):
  - its parameters get requires_grad=False: no gradient, and no optimizer state when the optimizer is built
    from `param_groups` (permanently frozen parameters are not in it at all);
  - its batch-norm layers stay in eval mode, keeping their running statistics, even through `model.train()`:
    each such layer's `train` is replaced on the instance by one that keeps it in eval mode, so the engine's
    usual model.train() / model.eval() calls need no change;
  - each maximal frozen block (ResNet's conv1, bn1, layer1..3 when [layer4, fc] train) runs under
    torch.no_grad() whenever none of its inputs needs a gradient, which is the case for the frozen front of
    the network. The block's `forward` is replaced on the instance; hooks, state-dict keys and printing stay.
    This finds the frozen front by what each block receives, so it needs no assumption about the order in
    which a model's forward calls its children and never falls back. Autograd itself records nothing for a
    block whose parameters and inputs need no gradient, so the gradients are the same with or without it;
    it makes the saving explicit and independent of the model's own code.
The replacements are functools.partial objects on the module, so copy.deepcopy(model) copies them bound to
the copy. A block that reads a tensor needing a gradient from anywhere but its inputs must not be frozen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Optional

import torch
from torch import nn

from cnnlab.errors import CnnlabError, did_you_mean

Prefixes = Optional[list[str]]  # None: every parameter trains


def trainable_prefixes(policy, heads: list[str]) -> Prefixes:
    """`all` -> None, `last` -> the heads, a list of module names -> that list."""
    if policy == "all":
        return None
    if policy == "last":
        return list(heads)
    if isinstance(policy, (list, tuple)) and policy and all(isinstance(p, str) for p in policy):
        return list(policy)
    raise CnnlabError(f"model.trainable is all, last or a list of module names (e.g. [layer4, fc]), not {policy!r}")


def trainable_at(epoch: int, prefixes: Prefixes, heads: list[str], unfreeze_after: Optional[int]) -> Prefixes:
    """The selection for 0-based `epoch`: the heads alone for the first `unfreeze_after` epochs, then `prefixes`."""
    if unfreeze_after is not None and epoch < unfreeze_after:
        return list(heads)
    return prefixes


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@dataclass
class FreezeRecord:
    """What `set_trainable` did, for the run's record."""

    trainable: Prefixes
    trainable_params: int
    frozen_params: int
    frozen_blocks: list[str] = field(default_factory=list)  # run without autograd when no input needs a gradient
    eval_norms: list[str] = field(default_factory=list)  # batch norms kept in eval mode
    became_trainable: list[str] = field(default_factory=list)  # parameters frozen before this call, trainable now

    def as_dict(self) -> dict:
        return asdict(self)


def _needs_grad(value) -> bool:
    """Whether an input carries a tensor that needs a gradient; an object of unknown kind counts as yes."""
    if isinstance(value, torch.Tensor):
        return value.requires_grad
    if isinstance(value, (list, tuple)):
        return any(map(_needs_grad, value))
    if isinstance(value, dict):
        return any(map(_needs_grad, value.values()))
    return not isinstance(value, (int, float, str, bool, type(None)))


def _forward_without_autograd(block: nn.Module, *args, **kwargs):
    """`block`'s own forward, under torch.no_grad() unless one of its inputs needs a gradient."""
    if _needs_grad(args) or _needs_grad(kwargs):
        return type(block).forward(block, *args, **kwargs)
    with torch.no_grad():
        return type(block).forward(block, *args, **kwargs)


def _stay_in_eval(norm: nn.Module, mode: bool = True) -> nn.Module:
    """Replaces a frozen batch norm's `train`: whatever mode is asked for, it keeps its running statistics."""
    return nn.Module.train(norm, False)


OVERRIDES = {"forward": _forward_without_autograd, "train": _stay_in_eval}


def _undo(model: nn.Module) -> None:
    """Remove what an earlier `set_trainable` put on the modules; released norms follow the model's mode."""
    for module in model.modules():
        for attr, func in OVERRIDES.items():
            installed = module.__dict__.get(attr)
            if isinstance(installed, partial) and installed.func is func:
                del module.__dict__[attr]
                if attr == "train":
                    module.train(model.training)


def _frozen_blocks(module: nn.Module, name: str = "") -> list[tuple[str, nn.Module]]:
    """The largest modules whose parameters (at least one) are all frozen."""
    params = list(module.parameters())
    if params and not any(p.requires_grad for p in params):
        return [(name, module)]
    return [
        b
        for child_name, child in module.named_children()
        for b in _frozen_blocks(child, f"{name}.{child_name}" if name else child_name)
    ]


def _check(model: nn.Module, prefixes: list[str]) -> None:
    names = [n for n, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(_under(n, [p]) for n in names)]
    if unknown:
        parts = ", ".join(n for n, m in model.named_children() if any(True for _ in m.parameters()))
        known = {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 1)}
        close = "".join(did_you_mean(p, known) for p in unknown)
        raise CnnlabError(
            f"model.trainable: {', '.join(unknown)} names no part of the model that has parameters"
            f"{close}; its parts are {parts} (name nested parts with dots, e.g. layer4.1)"
        )


def set_trainable(model: nn.Module, prefixes: Prefixes) -> FreezeRecord:
    """Train the parameters under `prefixes` (None: all), freeze the rest; see the module docstring."""
    if prefixes is not None:
        _check(model, prefixes)
    _undo(model)
    before = {n for n, p in model.named_parameters() if p.requires_grad}
    for n, p in model.named_parameters():
        p.requires_grad_(prefixes is None or _under(n, prefixes))
    blocks = _frozen_blocks(model)
    eval_norms = []
    for block_name, block in blocks:
        block.forward = partial(_forward_without_autograd, block)
        for norm_name, norm in block.named_modules(prefix=block_name):
            if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                norm.train = partial(_stay_in_eval, norm)
                norm.eval()
                eval_norms.append(norm_name)
    params = dict(model.named_parameters())
    trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    return FreezeRecord(
        prefixes,
        trainable,
        sum(p.numel() for p in params.values()) - trainable,
        [n for n, _ in blocks],
        eval_norms,
        [n for n, p in params.items() if p.requires_grad and n not in before],
    )


def param_groups(model: nn.Module, heads: list[str], prefixes: Prefixes, body_lr_mult: float = 1.0) -> list[dict]:
    """Optimizer groups for every parameter that trains at some epoch: the heads, and the selected body.

    The body group holds parameters still frozen until `unfreeze_after` too: they have no gradient until then,
    so the optimizer skips them and keeps no state for them. The engine multiplies the scheduled learning
    rate by each group's `lr_mult` (discriminative rates: a body_lr_mult below 1 moves pretrained layers less).
    """
    head, body = [], []
    for n, p in model.named_parameters():
        if _under(n, heads):
            head.append(p)
        elif prefixes is None or _under(n, prefixes):
            body.append(p)
    groups = [{"name": "head", "params": head, "lr_mult": 1.0}]
    if body:
        groups.append({"name": "body", "params": body, "lr_mult": body_lr_mult})
    return groups
