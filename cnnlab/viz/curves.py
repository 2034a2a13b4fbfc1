"""Training curves against epochs: one figure per metric with train, validation and test lines."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

SPLITS = (("train", "training"), ("val", "validation"), ("test", "test"))
LABELS = {"loss": "loss (cross-entropy)", "acc": "accuracy"}


def plot_metric(history: list[dict], metric: str, path: Path, title: str = "", log_x: bool = False) -> Path:
    """Plot `<split>_<metric>` for each split present, x = epoch (1-based, as recorded)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=100)
    epochs = [row["epoch"] for row in history]
    for split, label in SPLITS:
        key = f"{split}_{metric}"
        if history and key in history[0]:
            ax.plot(epochs, [row[key] for row in history], marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(LABELS.get(metric, metric))
    if log_x:
        ax.set_xscale("log")
    ax.set_title(title or LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
