"""A convolution's weights as pictures: one RGB tile per filter over 3 input channels, else one grey tile
per (filter, input channel); each filter scaled from its own minimum (black) to its own maximum (white)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.errors import CnnlabError


@dataclass
class FilterTiles:
    """`tiles` (T, 1 or 3, kh, kw) in 0..1; `ranges` (filters, 2) the min and max each filter was scaled from.

    `per_row` tiles make one row of the grid: the input channels of one filter for grey tiles.
    """

    tiles: torch.Tensor
    ranges: torch.Tensor
    rgb: bool
    per_row: int


def filter_tiles(conv: nn.Module, name: str = "") -> FilterTiles:
    """The tiles of a Conv2d's weights (out, in, kh, kw)."""
    if not isinstance(conv, nn.Conv2d):
        raise CnnlabError(
            f"layer '{name}' is a {type(conv).__name__}, not a Conv2d; its weights are not filters to draw"
        )
    w = conv.weight.detach().float().cpu()
    out, cin = w.shape[:2]
    flat = w.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    span = (high - low).clamp_min(torch.finfo(w.dtype).tiny).view(-1, 1, 1, 1)
    scaled = (w - low.view(-1, 1, 1, 1)) / span
    rgb = cin == 3
    tiles = scaled if rgb else scaled.reshape(out * cin, 1, *w.shape[2:])
    per_row = 8 if rgb or cin == 1 else cin
    return FilterTiles(tiles, torch.stack([low, high], 1), rgb, per_row)
