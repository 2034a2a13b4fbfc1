"""The per-layer table (layer, type, output shape, parameters), from one forward pass with hooks."""
from __future__ import annotations

import torch
from torch import nn


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules with no children: the layers that actually compute."""
    return [(name, m) for name, m in model.named_modules() if not list(m.children()) and name]


def layer_table(model: nn.Module, input_shape: tuple[int, ...], device="cpu") -> list[dict]:
    """One row per executed leaf layer, in execution order; a layer run twice is listed once."""
    rows: dict[str, dict] = {}
    hooks = []

    def record(name):
        def hook(module, inputs, output):
            if name not in rows and isinstance(output, torch.Tensor):
                rows[name] = {
                    "name": name,
                    "type": type(module).__name__,
                    "output_shape": list(output.shape[1:]),
                    "params": sum(p.numel() for p in module.parameters(recurse=False)),
                    "trainable_params": sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad),
                    "buffers": sum(b.numel() for b in module.buffers(recurse=False) if b.is_floating_point()),
                }
        return hook

    was_training = model.training
    try:
        for name, module in leaf_modules(model):
            hooks.append(module.register_forward_hook(record(name)))
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return list(rows.values())
