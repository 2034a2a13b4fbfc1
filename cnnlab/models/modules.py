"""The small torch modules a spec needs beyond torch's own: skip markers, a constant factor, global average pooling."""

from __future__ import annotations

import torch
from torch import nn


class Named(nn.Module):
    """A skip module: it carries the name of the saved tensor it marks or uses (SpecNet's forward reads it)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def extra_repr(self):
        return self.name


class Save(Named):
    """Marks a tensor to be used again by a later `cat` or `add` of the same name."""

    def forward(self, x):
        return x


class Concat(Named):
    """U-Net skip: concatenate a saved tensor along channels."""

    def forward(self, x, skip):
        return torch.cat([x, skip], dim=1)


class Add(Named):
    """Residual skip: add a saved tensor."""

    def forward(self, x, skip):
        return x + skip


class Mul(nn.Module):
    """Multiply by a constant: a fixed output temperature (e.g. logits scaled by 1/9) without a trained scale."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor

    def extra_repr(self):
        return str(self.factor)


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))
