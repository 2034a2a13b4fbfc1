"""The learning-rate range test's figure: loss against rate (log axis), raw and smoothed, the suggestion marked."""

from __future__ import annotations

from cnnlab.viz.figure import subplots


def draw_lr_find(result, title: str = "learning-rate range test"):
    """`result`: a cnnlab.engine.lr_find.LRFind (its lrs, losses, smoothed, suggestion, minimum_lr)."""
    fig, ax = subplots(figsize=(5.6, 3.8), dpi=100)  # its own Agg canvas: pyplot's state stays the user's
    ax.plot(result.lrs, result.losses, color="0.75", linewidth=0.8, label="loss per step")
    ax.plot(result.lrs, result.smoothed, color="C0", label="smoothed")
    if result.suggestion is not None:
        ax.axvline(
            result.suggestion,
            color="C3",
            linestyle="--",
            linewidth=1,
            label=f"suggested {result.suggestion:.2g} (steepest fall)",
        )
    ax.axvline(result.minimum_lr, color="0.4", linestyle=":", linewidth=1, label=f"lowest at {result.minimum_lr:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    low, start = min(result.losses), result.smoothed[0]
    ax.set_ylim(low - 0.05 * (start - low), start + 0.5 * (start - low))  # the diverging tail is cut off
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
