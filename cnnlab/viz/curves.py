"""Training curves against epochs: one figure per metric with training, validation and test lines."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


from cnnlab.metrics import SPLIT_METRICS, SPLITS, split_key
from cnnlab.viz.figure import subplots, write_png
from cnnlab.viz.ticks import epoch_axis


def _axis(metric: str) -> str:
    return SPLIT_METRICS[metric].axis_label() if metric in SPLIT_METRICS else metric


def plot_metric(
    history: list[dict],
    metric: str,
    path: Path,
    title: str = "",
    log_x: bool = False,
    initial: Optional[float] = None,
    notes: Optional[dict] = None,
) -> Path:
    """Draw the figure of `metric` and save it at `path` (PNG, with SVG and PDF beside it)."""
    return write_png(draw_metric(history, metric, title, log_x, initial, notes), path, vector=True)


def draw_metric(
    history: list[dict],
    metric: str,
    title: str = "",
    log_x: bool = False,
    initial: Optional[float] = None,
    notes: Optional[dict] = None,
):
    """One figure: `<split>_<metric>` for each split present, x = epoch (1-based, as recorded); a split's line
    joins the epochs that recorded it. `initial`: the loss measured before training, drawn at epoch 0 (not on a
    log axis, which has no 0). `notes` ({split: text}) say in the legend where a split's line measures
    something else (the training loss with label smoothing)."""
    fig, ax = subplots(figsize=(5.2, 3.6), dpi=100)
    for split, label in SPLITS.items():
        key = split_key(split, metric)
        rows = [row for row in history if key in row]  # epochs without evaluation have no val and test values
        note = (notes or {}).get(split)
        if rows:
            ax.plot(
                [row["epoch"] for row in rows],
                [row[key] for row in rows],
                marker="o",
                markersize=3,
                label=f"{label} ({note})" if note else label,
            )
    if initial is not None and not log_x:
        ax.plot([0], [initial], marker="s", linestyle="none", color="0.3", label="before training")
    epoch_axis(ax, log_x)
    ax.set_ylabel(_axis(metric))
    ax.set_title(title or _axis(metric))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_runs(histories: dict[str, list[dict]], metric: str, path: Path, title: str = "") -> Path:
    """Overlay several runs' training and validation curves of one metric (solid: validation, dashed: training)."""
    fig, ax = subplots(figsize=(5.2, 3.6), dpi=100)
    for i, (label, history) in enumerate(histories.items()):
        colour = f"C{i}"
        for split, style in (("val", {"marker": "o", "markersize": 3}), ("train", {"linestyle": "--"})):
            rows = [row for row in history if split_key(split, metric) in row]
            ax.plot(
                [row["epoch"] for row in rows],
                [row[split_key(split, metric)] for row in rows],
                color=colour,
                label=f"{label} ({SPLITS[split]})",
                **style,
            )
    epoch_axis(ax)
    ax.set_ylabel(_axis(metric))
    ax.set_title(title or _axis(metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return write_png(fig, path, vector=True)
