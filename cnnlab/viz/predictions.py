"""Pictures of predictions: colourization rows, segmentation overlays."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.viz.figure import picture, subplots, write_png


def image_grid(rows: list[tuple[str, list[torch.Tensor]]], path: Path, title: str, cell: float = 1.3) -> Path:
    """A grid with one labelled row per kind of picture and one column per example."""
    cols = len(rows[0][1])
    fig, axes = subplots(len(rows), cols, figsize=(cell * cols + 1.2, cell * len(rows) + 0.6), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, img in enumerate(images):
            ax = axes[r][c]
            ax.imshow(picture(img), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return write_png(fig, path)


def colour_rows(grey, predicted, truth, original, path: Path, title: str) -> Path:
    """Rows: greyscale input / prediction / ground truth quantised to the palette / original photo."""
    return image_grid(
        [
            ("input (grey)", list(grey)),
            ("prediction", list(predicted)),
            ("truth (palette)", list(truth)),
            ("original", list(original)),
        ],
        path,
        title,
    )


def overlay(photo: torch.Tensor, mask: torch.Tensor, colour=(1.0, 0.1, 0.1), alpha: float = 0.5) -> torch.Tensor:
    """A photo (3, H, W) uint8 with the pixels of `mask` (H, W) tinted."""
    img = photo.float().cpu() / 255
    tint = torch.tensor(colour).view(3, 1, 1)
    m = (mask.cpu() == 1).float().unsqueeze(0)
    return img * (1 - alpha * m) + tint * alpha * m


def segmentation_rows(photos, predicted, truth, path: Path, title: str) -> Path:
    """Rows: prediction overlaid on the photo / the true mask overlaid / the true mask alone."""
    return image_grid(
        [
            ("prediction", [overlay(p, m) for p, m in zip(photos, predicted)]),
            ("truth", [overlay(p, m, colour=(0.1, 0.8, 0.1)) for p, m in zip(photos, truth)]),
            ("true mask", [(m.cpu() == 1).float().unsqueeze(0) for m in truth]),
        ],
        path,
        title,
        cell=1.8,
    )
