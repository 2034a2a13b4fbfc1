"""Statistics over seeds: summaries with t-based 95% intervals, the z-score with the test that fits the sample size
(Welch's t-test; the normal test from LARGE_SAMPLE runs), Holm's correction, and how many seeds a difference would
need (the power of the two-sample t-test, from the noncentral t).

Plain functions of lists of numbers, so that tests can check each against scipy or a hand formula.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import stats

POWER = 0.8  # the power asked of a future experiment when estimating how many seeds it needs
MAX_SEEDS = 10_000  # above this the estimate is reported as "more than"
LARGE_SAMPLE = 30  # runs per variant from which the z-score is read against the normal distribution


def describe(values: Sequence[float]) -> dict:
    """n, mean, sample standard deviation (n - 1), min, max, and the t-based 95% interval of the mean."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None, "ci95": None}
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else None
    ci = None
    if n > 1:
        half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
        ci = [mean - half, mean + half]
    return {"n": n, "mean": mean, "std": std, "min": float(x.min()), "max": float(x.max()), "ci95": ci}


def welch(a: Sequence[float], b: Sequence[float]) -> dict:
    """The difference mean(a) - mean(b) as a z-score, tested by the test that fits the sample size.

    The record (what renderers show; the verdict uses `p_value` and `ci95_diff`, nothing else):
      diff         mean(a) - mean(b)
      z            the z-score: diff / sqrt(s_a^2/n_a + s_b^2/n_b), the same number as Welch's t statistic
      t, df        Welch's t and its Welch-Satterthwaite degrees of freedom
      test         "welch_t" while a variant has fewer than LARGE_SAMPLE runs (z follows a t distribution with df
                   degrees of freedom; the normal distribution would make p far too small with few seeds), else
                   "normal" (z read against the normal distribution)
      p_value      two-sided p of `test`; ci95_diff: the 95% interval of the difference from the same distribution
      effect_size  Cohen's d with the pooled standard deviation (for the seeds a difference would need)
    Values are None where the test is undefined (fewer than 2 runs, no spread)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = len(a), len(b)
    out = {
        "diff": float(a.mean() - b.mean()) if na and nb else None,
        "z": None,
        "t": None,
        "df": None,
        "test": None,
        "p_value": None,
        "ci95_diff": None,
        "effect_size": None,
    }
    if na < 2 or nb < 2:
        return out
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:  # no spread in either variant: t is undefined
        return out
    out["effect_size"] = abs(out["diff"]) / pooled
    welch_t = stats.ttest_ind(a, b, equal_var=False)
    z, df = float(welch_t.statistic), float(welch_t.df)
    out.update(z=z, t=z, df=df)
    if min(na, nb) < LARGE_SAMPLE:
        low, high = welch_t.confidence_interval(0.95)
        return {**out, "test": "welch_t", "p_value": float(welch_t.pvalue), "ci95_diff": [float(low), float(high)]}
    half = float(stats.norm.ppf(0.975)) * out["diff"] / z
    return {
        **out,
        "test": "normal",
        "p_value": float(2 * stats.norm.sf(abs(z))),
        "ci95_diff": [out["diff"] - abs(half), out["diff"] + abs(half)],
    }


def test_name(kind: Optional[str], df: Optional[float]) -> str:
    """How a test's p-value was found (welch's `test`, its `df`), in words: "Welch's t, df 3.9" or "normal"."""
    if kind == "welch_t":
        return f"Welch's t, df {df:.1f}"
    return "normal" if kind == "normal" else "-"


def power(n: int, d: float, alpha: float) -> float:
    """Power of a two-sided two-sample t-test with n runs per group at effect size d (noncentral t)."""
    df = 2 * n - 2
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = d * math.sqrt(n / 2)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_needed(d: Optional[float], alpha: float, target: float = POWER) -> Optional[int]:
    """The smallest n per variant whose two-sample t-test reaches `target` power at effect size d.

    None when d is unknown or zero; MAX_SEEDS + 1 when even MAX_SEEDS is not enough."""
    if not d:
        return None
    if power(MAX_SEEDS, d, alpha) < target:
        return MAX_SEEDS + 1
    lo, hi = 2, 2
    while power(hi, d, alpha) < target:  # power grows with n: double, then halve the interval
        lo, hi = hi, hi * 2
    hi = min(hi, MAX_SEEDS)
    while lo < hi:
        mid = (lo + hi) // 2
        if power(mid, d, alpha) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def holm(p_values: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm's step-down adjustment of p-values for the number of tests made (None stays None)."""
    known = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(known)
    adjusted: list[Optional[float]] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
