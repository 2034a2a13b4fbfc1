"""Class activation maps laid over the image they explain."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.viz.figure import bare, picture, save, subplots


def plot_cam(image: torch.Tensor, maps: list[tuple[str, torch.Tensor]], path: Path, title: str, caption: str) -> dict:
    """`image` (C, H, W) in 0..1, then each (label, map (H, W) in 0..1) overlaid on it (jet, half transparent)."""
    fig, axes = subplots(1, len(maps) + 1, figsize=(2.6 * (len(maps) + 1), 3.2), squeeze=False)
    shown = picture(image)
    axes[0][0].imshow(shown, cmap="gray", vmin=0, vmax=1)
    axes[0][0].set_title("input", fontsize=8)
    for ax, (label, cam) in zip(axes[0][1:], maps):
        ax.imshow(shown, cmap="gray", vmin=0, vmax=1)
        ax.imshow(cam.detach().cpu().numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(label, fontsize=8)
    for ax in axes[0]:
        bare(ax)
    return save(fig, path, title, caption, panels=[label for label, _ in maps])
