"""A convolution's filters as one image grid (torchvision's make_grid), each tile already scaled to 0..1."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.viz.figure import bare, picture, save, subplots


def plot_filter_grid(
    tiles: torch.Tensor, ranges: torch.Tensor, per_row: int, path: Path, layer: str, rgb: bool
) -> dict:
    """Tiles (T, 1 or 3, kh, kw) in rows of `per_row`; `ranges` (filters, 2) is each filter's own (min, max)."""
    from torchvision.utils import make_grid  # torchvision costs about a second to import: only when drawn

    grid = make_grid(tiles, nrow=per_row, padding=1, pad_value=1.0)
    filters, (kh, kw) = ranges.shape[0], tiles.shape[-2:]
    rows = (tiles.shape[0] + per_row - 1) // per_row
    inch = max(0.12 * kh, 0.35)
    fig, ax = subplots(figsize=(max(per_row * inch, 4.5), rows * inch + 1.2))
    ax.imshow(picture(grid if rgb else grid[:1]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    bare(ax)
    if not rgb and per_row > 1 and tiles.shape[0] > filters:
        ax.set_xlabel("input channels ->", fontsize=8)
        ax.set_ylabel("filters", fontsize=8)
    layout = (
        "one RGB tile per filter"
        if rgb
        else ("one grey tile per filter" if tiles.shape[0] == filters else "one grey tile per (filter, input channel)")
    )
    low, high = ranges[:, 0], ranges[:, 1]
    caption = (
        f"{layout}; each filter scaled to its own range, its minimum black and its maximum white; "
        f"minima {low.min():.3g} to {low.max():.3g}, maxima {high.min():.3g} to {high.max():.3g}"
    )
    return save(
        fig,
        path,
        f"{layer}: {filters} filters of {kh}x{kw}",
        caption,
        tiles=int(tiles.shape[0]),
        grid_size=list(grid.shape[1:]),
    )
