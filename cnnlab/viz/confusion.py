"""The confusion matrix (counts and row-normalised) and the wrong predictions a classifier was surest of."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from cnnlab.viz.figure import bare, picture, save, subplots


def _matrix(ax, values: torch.Tensor, classes: list[str], title: str, fmt: str, vmax: float) -> None:
    """One heat map; the value written in each cell when there are few classes."""
    ax.imshow(values.numpy(), cmap="Blues", vmin=0, vmax=vmax)
    k = len(classes)
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), classes, fontsize=7)
    ax.set_xlabel("predicted class", fontsize=8)
    ax.set_ylabel("true class", fontsize=8)
    ax.set_title(title, fontsize=9)
    if k <= 15:
        for t in range(k):
            for p in range(k):
                v = float(values[t, p])
                ax.text(
                    p,
                    t,
                    f"{v:{fmt}}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if v > 0.6 * vmax else "black",
                )


def plot_confusion(counts: torch.Tensor, normalised: torch.Tensor, classes: list[str], path: Path, title: str) -> dict:
    """Counts (K, K), rows true classes, beside the same rows divided by each class's number of examples."""
    side = 1.2 + 0.42 * len(classes)
    fig, axes = subplots(1, 2, figsize=(2 * side + 0.5, side + 1.2))
    counts = counts.cpu()
    _matrix(axes[0], counts, classes, "counts", ".0f", max(int(counts.max()), 1))
    _matrix(axes[1], normalised.cpu(), classes, "row-normalised (share of each true class)", ".2f", 1.0)
    caption = (
        f"{int(counts.sum())} examples; diagonal: right; accuracy {int(counts.trace()) / max(int(counts.sum()), 1):.4f}"
    )
    return save(fig, path, title, caption, classes=list(classes))


def plot_most_confused(images: list[torch.Tensor], examples: list[dict], path: Path, title: str) -> dict:
    """Each image (C, H, W) titled with its example index, true class, predicted class
    and that prediction's probability."""
    cols = min(8, max(len(images), 1))
    rows = max(math.ceil(len(images) / cols), 1)
    fig, axes = subplots(rows, cols, figsize=(1.55 * cols + 0.4, 1.85 * rows + 0.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, ex in zip(axes.flat, images, examples):
        ax.axis("on")
        ax.imshow(picture(image), cmap="gray", vmin=0, vmax=1)
        ax.set_title(
            f"#{ex['index']} true: {ex['true']}\npred: {ex['predicted']} p={ex['probability']:.2f}", fontsize=6.5
        )
        bare(ax)
    caption = "the wrong test predictions made with the highest probability, most confident first"
    return save(fig, path, title, caption, examples=len(images))
