"""Band plots: per metric, every variant's mean curve over seeds with its min-max band, against epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab import metrics
from cnnlab.viz.figure import subplots, write_png
from cnnlab.viz.ticks import epoch_axis

Histories = list[list[dict]]  # one metrics.jsonl (a list of per-epoch rows) per run


def band(histories: Histories, key: str) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, mean, min, max) of `key` over the runs; an epoch counts the runs that reached it."""
    per_epoch: dict[int, list[float]] = {}
    for history in histories:
        for row in history:
            if row.get(key) is not None:
                per_epoch.setdefault(row["epoch"], []).append(row[key])
    epochs = sorted(per_epoch)
    values = [np.asarray(per_epoch[e], dtype=float) for e in epochs]
    return (
        epochs,
        np.array([v.mean() for v in values]),
        np.array([v.min() for v in values]),
        np.array([v.max() for v in values]),
    )


def plot_bands(variants: list[tuple[str, Histories]], key: str, path: Path, log_x: bool = False) -> Path:
    """Draw the band figure of `key` and save it as a PNG at `path`."""
    return write_png(draw_bands(variants, key, log_x), path, vector=True)


def plot_train_val(variants: list[tuple[str, Histories]], metric: str, path: Path, log_x: bool = False) -> Path:
    """Draw the training-and-validation figure of `metric` (e.g. loss) and save it as a PNG at `path`."""
    return write_png(draw_train_val(variants, metric, log_x), path, vector=True)


def draw_bands(variants: list[tuple[str, Histories]], key: str, log_x: bool = False):
    """One figure: a line (mean over seeds) and a shaded min-max band per variant; x is the epoch."""
    fig, ax = subplots(figsize=(7, 4.5), dpi=100)
    for i, (name, histories) in enumerate(variants):
        draw_band(ax, histories, key, f"C{i % 10}", f"{name} (n={len(histories)})")
    finish(
        fig,
        ax,
        metrics.label(key, unit=True),
        f"{metrics.label(key)}: mean over seeds, band from min to max",
        len(variants),
        log_x,
    )
    return fig


def draw_train_val(variants: list[tuple[str, Histories]], metric: str, log_x: bool = False):
    """One figure with each variant's training (dashed) and validation (solid) curves of `metric`, mean over seeds
    with min-max bands: how far apart a transfer model's and a model trained from scratch fit and generalise."""
    fig, ax = subplots(figsize=(7, 4.5), dpi=100)
    for i, (name, histories) in enumerate(variants):  # one legend entry a variant (its colour), two for the styles
        for split, linestyle in (("train", "--"), ("val", "-")):
            draw_band(
                ax,
                histories,
                metrics.split_key(split, metric),
                f"C{i % 10}",
                f"{name} (n={len(histories)})" if split == "val" else "_",
                linestyle,
            )
    for split, linestyle in (("train", "--"), ("val", "-")):
        ax.plot([], [], color="0.3", linestyle=linestyle, label=metrics.SPLITS[split])
    title = f"{metrics.SPLIT_METRICS[metric].axis_label()}: training (dashed) and validation (solid)"
    finish(fig, ax, metrics.SPLIT_METRICS[metric].axis_label(), title, len(variants) + 2, log_x)
    return fig


def draw_band(ax, histories: Histories, key: str, color: str, label: str, linestyle: str = "-") -> None:
    """One variant's mean curve of `key` with its min-max band (an error bar when only one epoch has values)."""
    epochs, mean, lo, hi = band(histories, key)
    if not epochs:
        return
    if len(epochs) == 1:  # a band needs two epochs; show the spread as an error bar instead
        ax.errorbar(epochs, mean, yerr=[mean - lo, hi - mean], color=color, marker="o", capsize=4, label=label)
    else:
        ax.plot(epochs, mean, color=color, marker="o", markersize=3, linestyle=linestyle, label=label)
        ax.fill_between(epochs, lo, hi, color=color, alpha=0.2, linewidth=0)


def finish(fig, ax, ylabel: str, title: str, lines: int, log_x: bool) -> None:
    """Axes, title, grid and a legend that moves outside the plot when it has many lines."""
    epoch_axis(ax, log_x)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if lines > 6:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize="small")
    fig.tight_layout()
