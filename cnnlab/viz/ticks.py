"""Axis ticks a person reads at a glance: whole epochs (never 1.5), plain numbers on log axes (never 2x10^0)."""

from __future__ import annotations

from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

PLAIN = FuncFormatter(lambda value, _: f"{value:g}")  # 1, 2, 50, 1000, 0.001


def plain_log_x(ax) -> None:
    """Log-scale x with plain labels on the major ticks and unlabelled minor ticks."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(PLAIN)
    ax.xaxis.set_minor_formatter(NullFormatter())


def epoch_axis(ax, log_x: bool = False) -> None:
    """Label x as the epoch with ticks at whole epochs only; on a log axis 1, 2, 5, 10, 20, ... (every epoch
    while the curves span less than a decade). Call after the curves are drawn: the span is read from them."""
    ax.set_xlabel("epoch")
    whole = MaxNLocator(integer=True, min_n_ticks=1)  # one tick, not 0.95 ... 1.05, for a one-epoch run
    first, last = ax.dataLim.intervalx
    if not log_x or last <= first:  # a single epoch has no span to put on a log scale
        ax.xaxis.set_major_locator(whole)
        return
    plain_log_x(ax)
    ax.xaxis.set_major_locator(whole if last < 10 * max(first, 1) else LogLocator(subs=(1.0, 2.0, 5.0)))


def value_axis(ax, values: list[float], key: str) -> None:
    """x is a swept setting: a tick at each value tried, on a log axis once the values span a decade or more."""
    ax.set_xlabel(key)
    if min(values) > 0 and max(values) >= 10 * min(values):
        plain_log_x(ax)
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(values))))
    ax.xaxis.set_major_formatter(PLAIN)
