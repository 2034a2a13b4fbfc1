"""How sparse the weights are: the share below a threshold in magnitude, and the share exactly zero.

Counted over the weights of convolutions and dense layers; biases and batch-norm parameters are left
out (they are not what L1 regularisation is asked to thin out, and there are few of them).
"""

from __future__ import annotations

import torch
from torch import nn

NOTE = "conv and dense weights only; biases and batch-norm parameters excluded"
WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)


def _counts(n: int, below: int, zeros: int) -> dict:
    return {
        "weights": n,
        "below": below,
        "zeros": zeros,
        "share_below": below / n if n else 0.0,
        "share_zero": zeros / n if n else 0.0,
    }


def tensor_sparsity(w: torch.Tensor, threshold: float) -> dict:
    """{weights, below, zeros, share_below, share_zero} of one tensor; `below` counts |w| < threshold."""
    w = w.detach()
    return _counts(w.numel(), int((w.abs() < threshold).sum()), int((w == 0).sum()))


def sparsity(model: nn.Module, threshold: float = 1e-3) -> dict:
    """Per layer and in total; JSON-able."""
    layers = [
        {"name": name, "type": type(m).__name__, **tensor_sparsity(m.weight, threshold)}
        for name, m in model.named_modules()
        if isinstance(m, WEIGHTED)
    ]
    total = _counts(*(sum(row[key] for row in layers) for key in ("weights", "below", "zeros")))
    return {"threshold": threshold, "note": NOTE, "layers": layers, "total": total}
