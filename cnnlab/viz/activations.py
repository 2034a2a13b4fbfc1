"""An image beside channels of one layer's activation map, each channel with its index and value range."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from cnnlab.viz.figure import bare, figure, picture, save


def plot_activations(
    image: torch.Tensor, act: torch.Tensor, path: Path, layer: str, channels: int = 16, note: str = ""
) -> dict:
    """`image` (C, H, W) in 0..1 beside the first `channels` channels of `act` (C, h, w), each on its own scale."""
    shown = list(range(min(channels, act.shape[0])))
    cols = min(8, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig = figure(figsize=(2.6 + 1.25 * cols, 0.7 + 1.35 * max(rows, 2)))
    grid = fig.add_gridspec(rows, cols + 2)
    ax = fig.add_subplot(grid[:, :2])
    ax.imshow(picture(image), cmap="gray", vmin=0, vmax=1)
    ax.set_title("input", fontsize=8)
    bare(ax)
    ranges = []
    for i, c in enumerate(shown):
        a = act[c].detach().float().cpu()
        low, high = float(a.min()), float(a.max())
        ranges.append([low, high])
        ax = fig.add_subplot(grid[i // cols, 2 + i % cols])
        ax.imshow(a.numpy(), cmap="viridis", vmin=low, vmax=high if high > low else low + 1, interpolation="nearest")
        ax.set_title(f"ch {c}: {low:.2g}..{high:.2g}", fontsize=7)
        bare(ax)
    size = "x".join(str(d) for d in act.shape)
    caption = (
        f"{layer} gives {size} (channels x height x width); channels {shown[0]}-{shown[-1]} shown, "
        f"each on its own colour scale from its minimum (dark) to its maximum (yellow)" + (f"; {note}" if note else "")
    )
    return save(
        fig, path, f"activations of {layer}", caption, layer=layer, shape=list(act.shape), channels=shown, ranges=ranges
    )
