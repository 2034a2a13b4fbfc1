"""The blocks of a comparison (cnnlab compare, a sweep's report): one table of the compared metrics per variant
(mean ± std over seeds), then per metric its statistics and the pairwise tests with their verdicts in words.
The terminal, HTML, Markdown and LaTeX all show these same blocks."""

from __future__ import annotations

from typing import Optional

from cnnlab import metrics
from cnnlab.document import Block, Fixed, Heading, Table, Text
from cnnlab.records import Comparison, MetricComparison, Stats
from cnnlab.sweep import stats

STAT_WORDS = {"final": "last epoch", "best": "best checkpoint"}


def column_label(c: MetricComparison) -> str:
    return f"{metrics.label(c.metric)} ({STAT_WORDS[c.stat]})"


def _digits(c: MetricComparison) -> int:
    return metrics.digits(c.metric) or 1


def mean_std(s: Stats, digits: int) -> Optional[str]:
    if s.mean is None:
        return None
    return f"{s.mean:.{digits}f}" + (f" ± {s.std:.{digits}f}" if s.std is not None else "")


def _interval(ci: Optional[list[float]], digits: int, sign: str = "") -> Optional[str]:
    return None if ci is None else f"[{ci[0]:{sign}.{digits}f}, {ci[1]:{sign}.{digits}f}]"


def overview_table(c: Comparison) -> Table:
    """A row per variant, a column per compared metric: mean ± std over its runs."""
    first = c.columns[0]
    rows = [
        [v.name, len(v.runs), *(mean_std(col.of(col.variants[i]), _digits(col)) for col in c.columns)]
        for i, v in enumerate(first.variants)
    ]
    return Table(
        "Final metrics (mean ± std over seeds)",
        ["variant", "runs"] + [column_label(col) for col in c.columns],
        rows,
        name="final-metrics",
    )


def stats_table(c: MetricComparison) -> Table:
    d = _digits(c)
    rows = [
        [
            v.name,
            s.n,
            mean_std(s, d),
            Fixed(s.min, d) if s.min is not None else None,
            Fixed(s.max, d) if s.max is not None else None,
            _interval(s.ci95, d),
        ]
        for v in c.variants
        for s in [c.of(v)]
    ]
    return Table(
        f"{column_label(c)} over seeds",
        ["variant", "n", "mean ± std", "min", "max", "95% CI of the mean"],
        rows,
        name=f"stats-{c.metric}-{c.stat}",
    )


def tests_table(c: MetricComparison, alpha: float) -> Table:
    """The z-score of every pair with the test that fits the sample size; a difference significant after Holm's
    correction in bold."""
    d = _digits(c)
    rows = [
        [
            t.a,
            t.b,
            Fixed(t.diff, d) if t.diff is not None else None,
            _interval(t.ci95_diff, d, "+"),
            Fixed(t.z, 2) if t.z is not None else None,
            stats.test_name(t.test, t.df),
            _p(t.p_value),
            _p(t.p_holm),
            t.words,
        ]
        for t in c.tests
    ]
    return Table(
        f"Tests of {column_label(c)}, alpha = {alpha:g}",
        ["a", "b", "a − b", "95% CI of a − b", "z", "test", "p", "p (Holm)", "verdict"],
        rows,
        drop=("test", "p (Holm)"),
        emphasis=[bool(t.significant_holm) for t in c.tests],
        name=f"tests-{c.metric}-{c.stat}",
    )


def _p(p: Optional[float]) -> Optional[str]:
    return None if p is None else f"{p:.4f}" if p >= 0.0001 else f"{p:.1e}"


def method_text() -> Text:
    return Text(
        [
            "Per variant the mean over seeds, the sample standard deviation (n - 1) and a 95% confidence "
            "interval mean ± t(0.975, n - 1)·s/√n. Two variants are compared by the z-score, the difference over "
            "its standard error, judged by Welch's t (Welch-Satterthwaite degrees of freedom) while a variant "
            f"has fewer than {stats.LARGE_SAMPLE} seeds and by the normal distribution from "
            f"{stats.LARGE_SAMPLE} on; p is that test's, the one the verdict uses. Holm's correction adjusts for "
            "the number of comparisons of a metric. Seeds needed: the smallest number of seeds per variant at "
            "which a two-sided two-sample t-test would detect the observed effect size (Cohen's d) with "
            f"{round(stats.POWER * 100)}% power (noncentral t): a rough guide, since d is itself estimated."
        ],
        note=True,
    )


def comparison_blocks(c: Comparison) -> list[Block]:
    """The overview, then per metric its statistics and tests, then what applies to all (notes, left-out runs)."""
    out: list[Block] = [overview_table(c)]
    for col in c.columns:
        out.append(Heading(column_label(col), 3))
        out.append(stats_table(col))
        if col.tests:
            out.append(tests_table(col, c.alpha))
        notes = [line for line in [col.note, *col.warnings] if line]
        if notes:
            out.append(Text([f"Note: {line}" for line in notes], note=True))
    if any(col.tests for col in c.columns):
        out.append(method_text())
    if c.skipped:
        states = ", ".join(sorted({s["status"] for s in c.skipped}))
        out.append(Text([f"Left out: {len(c.skipped)} runs that did not complete ({states})."], note=True))
    return out
