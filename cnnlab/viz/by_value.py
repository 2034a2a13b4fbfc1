"""A metric against a swept number (batch size, learning rate): where along the axis a setting works best,
with the spread over seeds as a bar from the lowest to the highest run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab import metrics
from cnnlab.viz.figure import subplots, write_png
from cnnlab.viz.ticks import value_axis

Points = list[tuple[float, list[float]]]  # (the swept value, the metric of each of its runs)
STAT_WORDS = {"final": "at the last epoch", "best": "at the best checkpoint"}


def plot_by_value(series: dict[str, Points], key: str, metric: str, stat: str, path: Path) -> Path:
    """Draw the figure of `metric` against `key` and save it as a PNG at `path`."""
    return write_png(draw_by_value(series, key, metric, stat), path, vector=True)


def draw_by_value(series: dict[str, Points], key: str, metric: str, stat: str):
    """One line per series (named by the other grid keys, "" when there are none): the mean over runs at each
    value as a marker, a bar from the minimum to the maximum run."""
    fig, ax = subplots(figsize=(7, 4.5), dpi=100)
    shown = []
    for i, (label, points) in enumerate(series.items()):
        points = sorted((x, np.asarray(values, dtype=float)) for x, values in points if values)
        xs = [x for x, _ in points]
        mean = np.array([v.mean() for _, v in points])
        spread = [mean - np.array([v.min() for _, v in points]), np.array([v.max() for _, v in points]) - mean]
        ax.errorbar(xs, mean, yerr=spread, color=f"C{i % 10}", marker="o", capsize=4, label=label or None)
        shown += xs
    value_axis(ax, shown, key)
    ax.set_ylabel(metrics.label(metric, unit=True))
    ax.set_title(f"{metrics.label(metric)} {STAT_WORDS[stat]}: mean over seeds, bar from min to max", fontsize=10)
    ax.grid(alpha=0.3)
    if any(series):
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
