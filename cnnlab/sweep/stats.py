"""Statistics over seeds: summaries with t-based 95% intervals, Welch's t-test, the z-score, Holm's correction,
and how many seeds a difference would need (the power of the two-sample t-test, from the noncentral t).

Plain functions of lists of numbers, so that tests can check each against scipy or a hand formula.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import stats

POWER = 0.8  # the power asked of a future experiment when estimating how many seeds it needs
MAX_SEEDS = 10_000  # above this the estimate is reported as "more than"


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
    """Welch's unequal-variance t-test of mean(a) - mean(b) (scipy's ttest_ind with equal_var=False: t, the
    Welch-Satterthwaite degrees of freedom, p and the 95% interval of the difference), the same difference as a
    z-score, and Cohen's d.

    z is the same number as t, diff / sqrt(s_a^2/n_a + s_b^2/n_b), read against the normal distribution: a
    large-sample approximation whose p-value is too small with few seeds, so significance is decided by t.
    None where the test is undefined (fewer than 2 runs, no spread)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = len(a), len(b)
    out = {"diff": float(a.mean() - b.mean()) if na and nb else None, "t": None, "df": None, "p_value": None,
           "z": None, "z_p_value": None, "ci95_diff": None, "effect_size": None}
    if na < 2 or nb < 2:
        return out
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:  # no spread in either variant: t is undefined
        return out
    out["effect_size"] = abs(out["diff"]) / pooled  # Cohen's d with the pooled standard deviation
    test = stats.ttest_ind(a, b, equal_var=False)
    t = float(test.statistic)
    low, high = test.confidence_interval(0.95)
    out.update(t=t, df=float(test.df), p_value=float(test.pvalue), z=t, z_p_value=float(2 * stats.norm.sf(abs(t))),
               ci95_diff=[float(low), float(high)])
    return out


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
