"""Training curves against epochs: one figure per metric with training, validation and test lines."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from cnnlab.metrics import SPLIT_METRICS, SPLITS, split_key
from cnnlab.viz.figure import write_png
from cnnlab.viz.ticks import epoch_axis


def _axis(metric: str) -> str:
    return SPLIT_METRICS[metric].axis_label() if metric in SPLIT_METRICS else metric


def plot_metric(history: list[dict], metric: str, path: Path, title: str = "", log_x: bool = False) -> Path:
    """Draw the figure of `metric` and save it as a PNG at `path`."""
    return write_png(draw_metric(history, metric, title, log_x), path)


def draw_metric(history: list[dict], metric: str, title: str = "", log_x: bool = False):
    """One figure: `<split>_<metric>` for each split present, x = epoch (1-based, as recorded)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=100)
    epochs = [row["epoch"] for row in history]
    for split, label in SPLITS.items():
        key = split_key(split, metric)
        if history and key in history[0]:
            ax.plot(epochs, [row[key] for row in history], marker="o", markersize=3, label=label)
    epoch_axis(ax, log_x)
    ax.set_ylabel(_axis(metric))
    ax.set_title(title or _axis(metric))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_runs(histories: dict[str, list[dict]], metric: str, path: Path, title: str = "") -> Path:
    """Overlay several runs' training and validation curves of one metric (solid: validation, dashed: training)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=100)
    for i, (label, history) in enumerate(histories.items()):
        colour = f"C{i}"
        epochs = [row["epoch"] for row in history]
        ax.plot(epochs, [row[split_key("val", metric)] for row in history], color=colour, marker="o", markersize=3,
                label=f"{label} ({SPLITS['val']})")
        ax.plot(epochs, [row[split_key("train", metric)] for row in history], color=colour, linestyle="--",
                label=f"{label} ({SPLITS['train']})")
    epoch_axis(ax)
    ax.set_ylabel(_axis(metric))
    ax.set_title(title or _axis(metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return write_png(fig, path)
