"""Figures people read: epoch axes tick whole epochs, log axes read as plain numbers."""

from __future__ import annotations

import pytest

from cnnlab.viz.bands import draw_bands
from cnnlab.viz.curves import draw_metric


def history(epochs: int, shift: float = 0.0) -> list[dict]:
    """Metrics rows as a run writes them (the values only need to differ)."""
    return [
        {
            "epoch": e,
            "train_loss": 2.0 - 0.3 * e + shift,
            "val_loss": 2.1 - 0.25 * e + shift,
            "test_loss": 2.2 - 0.25 * e,
            "train_acc": 0.3 + 0.05 * e,
            "val_acc": 0.28 + 0.05 * e + shift,
            "test_acc": 0.27 + 0.05 * e,
        }
        for e in range(1, epochs + 1)
    ]


def x_labels(fig) -> tuple[list[str], list[str]]:
    """(major, minor) x tick labels as drawn: those inside the axis limits, minor ones only where they say something."""
    fig.canvas.draw()
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    major = [t.get_text() for t in ax.xaxis.get_majorticklabels() if low <= t.get_position()[0] <= high]
    minor = [
        t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text() and low <= t.get_position()[0] <= high
    ]
    return major, minor


@pytest.mark.parametrize("log_x", [False, True])
def test_three_epoch_curves_tick_whole_epochs(log_x):
    assert x_labels(draw_metric(history(3), "loss", log_x=log_x)) == (["1", "2", "3"], [])
    bands = draw_bands([("a", [history(3), history(3, 0.02)]), ("b", [history(3, 0.05)])], "val_loss", log_x=log_x)
    assert x_labels(bands) == (["1", "2", "3"], [])


@pytest.mark.parametrize("log_x", [False, True])
def test_one_epoch_curve_has_one_tick(log_x):
    assert x_labels(draw_metric(history(1), "acc", log_x=log_x)) == (["1"], [])


def test_long_log_axis_reads_plain_epoch_numbers():
    major, minor = x_labels(draw_bands([("a", [history(60), history(60, 0.02)])], "val_acc", log_x=True))
    assert major == ["1", "2", "5", "10", "20", "50"] and minor == []


BACKEND_CHECK = """
import matplotlib, matplotlib.pyplot as plt
before = matplotlib.get_backend()
plt.figure()
import cnnlab.viz.curves, cnnlab.viz.bands, cnnlab.viz.confusion, cnnlab.viz.activations
from tests.test_viz import history
fig = cnnlab.viz.curves.draw_metric(history(3), "loss")
from matplotlib.figure import Figure
print(isinstance(fig, Figure), before == matplotlib.get_backend(), plt.get_fignums())
"""


def test_figures_leave_the_backend_and_pyplot_alone():
    """Issue 18.3: a notebook's backend stays, and pyplot holds none of cnnlab's figures."""
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", BACKEND_CHECK],
        env={**os.environ, "MPLBACKEND": "svg"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "[1]"]


def test_no_module_of_cnnlab_draws_through_pyplot():
    """Every figure is made on its own Agg canvas (cnnlab.viz.figure): a module that imports pyplot would leave its
    figures in the user's pyplot state (the learning-rate finder's did)."""
    from pathlib import Path

    import cnnlab

    package = Path(cnnlab.__file__).parent
    users = [p.relative_to(package) for p in package.rglob("*.py") if "matplotlib.pyplot" in p.read_text()]
    assert users == []
