"""The comparison of variants: per-variant statistics of each compared metric (final and best), pairwise tests,
and the verdict of each test in plain words, as a Comparison record (what `cnnlab compare --format json` prints)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Optional

from cnnlab import metrics
from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.records import Comparison, MetricComparison, PairTest, Stats, VariantStats
from cnnlab.sweep import stats
from cnnlab.sweep.collect import Run, Variant, group, load_runs, summary_numbers
from cnnlab.sweep.grid import DEFINITION, SweepDef

STATS = ("final", "best")


def metric_names(runs: list[Run]) -> list[str]:
    """The per-epoch metrics the runs record (metrics.jsonl)."""
    keys: dict[str, None] = {}
    for run in runs:
        for row in run.history:
            keys.update(dict.fromkeys(k for k, v in row.items() if isinstance(v, (int, float)) and k != "epoch"))
    return list(keys)


def summary_names(runs: list[Run]) -> list[str]:
    """The dotted keys of the numbers the runs' summary.json files hold."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(summary_numbers(run.summary.to_dict())))
    return list(keys)


def metric_source(runs: list[Run], metric: str) -> str:
    """'epochs' for a per-epoch metric, 'summary' for a number of summary.json; a clear error for anything else."""
    if metric in metric_names(runs):
        return "epochs"
    numbers = summary_names(runs)
    if metric in numbers:
        return "summary"
    inside = [k for k in numbers if k.startswith(metric + ".")]
    if inside:
        raise CnnlabError(
            f"--metric {metric} is a section of summary.json, not one number; choose one of: "
            f"{', '.join(inside[:12])}{', ...' if len(inside) > 12 else ''}"
        )
    close = did_you_mean(metric, [*metric_names(runs), *numbers])
    raise CnnlabError(
        f"--metric {metric}: the runs record no such metric{close}; choose a per-epoch metric "
        f"({', '.join(metric_names(runs))}) or a number of summary.json by its dotted key "
        "(e.g. sparsity.total.share_below, test_acc_at_best, peak.gflops)"
    )


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def _seeds(a: int, b: int) -> str:
    return f"{a} seeds" if a == b else f"{a} and {b} seeds"


def verdict(test: PairTest, a: Variant, b: Variant, alpha: float, tests: int) -> str:
    """One sentence on whether a and b differ, for people: the difference, its interval and the p-value.

    A difference counts as significant only after Holm's correction when several pairs are tested; one that is
    significant alone but not after the correction says so first, so that it never reads like a clear win."""
    na, nb = len(a.runs), len(b.runs)
    if test.p_value is None:
        if min(na, nb) < 2:
            return f"cannot be tested: each variant needs at least 2 runs (these have {_seeds(na, nb)})"
        if test.diff == 0:
            return f"identical over {_seeds(na, nb)}: no difference at all"
        return f"no spread over seeds in either variant, so the difference of {test.diff:+.4f} cannot be tested"
    diff, (lo, hi) = test.diff, test.ci95_diff
    head = (
        f"{a.name} is {'higher' if diff > 0 else 'lower'} by {abs(diff):.4f} "
        f"(95% CI of the difference [{lo:+.4f}, {hi:+.4f}]; z = {test.z:.2f}, p = {_p(test.p_value)} "
        f"by {stats.test_name(test.test, test.df)})"
    )
    if test.significant:
        if tests > 1 and not test.significant_holm:
            return (
                f"{head}: not significant after Holm's correction for {tests} comparisons (adjusted p = "
                f"{_p(test.p_holm)}); it would be significant at the {alpha:g} level only as the sole comparison"
            )
        return f"{head}: significant at the {alpha:g} level" + (" after Holm's correction" if tests > 1 else "")
    text = f"{head}: not significant with {_seeds(na, nb)}"
    needed = test.seeds_needed
    if needed is None:
        return text
    if needed > stats.MAX_SEEDS:
        return (
            text
            + f"; more than {stats.MAX_SEEDS:,} seeds per variant would be needed to detect a difference this small"
        )
    if needed <= min(na, nb):  # a true effect this large would usually have been detected by these runs
        return (
            text + "; the difference is within the noise of these runs (a real difference as large as this one "
            f"would usually show with {min(na, nb)} seeds, so any real difference is probably smaller)"
        )
    return text + f"; about {needed} seeds per variant would be needed to detect a difference of this size"


def _describe(values: list[float]) -> Stats:
    return Stats(**stats.describe(values))


def _test(a: Variant, b: Variant, xa: list[float], xb: list[float], alpha: float) -> PairTest:
    test = PairTest(a=a.name, b=b.name, **stats.welch(xa, xb))
    test.significant = None if test.p_value is None else test.p_value < alpha
    test.seeds_needed = None if test.significant is not False else stats.seeds_needed(test.effect_size, alpha)
    return test


def compare(variants: list[Variant], metric: str, alpha: float = 0.05, stat: str = "final") -> MetricComparison:
    """Statistics per variant of `metric` (final and best beside) and Welch's test of `stat` for every pair."""
    if stat not in STATS:
        raise CnnlabError(f"--stat must be one of {', '.join(STATS)} (got {stat})")
    runs = [r for v in variants for r in v.runs]
    source = metric_source(runs, metric)
    values, rows = {}, []
    for v in variants:
        per = {s: [x for x in (r.value(metric, s) for r in v.runs) if x is not None] for s in STATS}
        values[v.name] = per[stat]
        rows.append(
            VariantStats(
                v.name,
                v.config,
                [str(r.path) for r in v.runs],
                [r.config.get("seed") for r in v.runs],
                per[stat],
                _describe(per["final"]),
                _describe(per["best"]),
            )
        )
    out = MetricComparison(metric, stat, source, rows)
    for row in rows:
        distinct = len(set(map(str, row.seeds)))
        if distinct < len(row.runs):
            out.warnings.append(
                f"{row.name}: {len(row.runs)} runs but only {distinct} distinct seed"
                f"{'s' if distinct > 1 else ''}; runs with the same seed are not independent samples, "
                "so the statistics overstate the evidence"
            )
    pairs = list(combinations(variants, 2))
    notes = []
    if source == "summary":
        notes.append(
            f"{metric} is a number of summary.json, one per run (written when the run ended), so final and "
            "best are the same value"
        )
    if all(len(v.runs) < 2 for v in variants):
        pairs = []  # e.g. the trials of an Optuna search: one run each, nothing to test
        notes.append("every variant has a single run, so no difference can be tested; run several seeds (--seeds)")
    out.note = "; ".join(notes) or None
    out.tests = [_test(a, b, values[a.name], values[b.name], alpha) for a, b in pairs]
    for test, adjusted in zip(out.tests, stats.holm([t.p_value for t in out.tests])):
        test.p_holm = adjusted
        test.significant_holm = None if adjusted is None else adjusted < alpha
    for (a, b), test in zip(pairs, out.tests):
        test.words = verdict(test, a, b, alpha, len(pairs))
    return out


def default_columns(task: str) -> list[tuple[str, str]]:
    """What a write-up's table of final metrics holds for `task`: training and validation loss and accuracy (and
    IoU for segmentation) at the last epoch, then the test metrics at the best checkpoint."""
    measured = metrics.TASK_METRICS.get(task, ("loss", "acc"))
    wanted = [m for m in ("loss", "acc", "iou") if m in measured]
    final = [(metrics.split_key(split, m), "final") for split in ("train", "val") for m in wanted]
    return final + [(metrics.split_key("test", m), "best") for m in wanted if m != "loss"]


def _one_kind(runs: list[Run]) -> str:
    """The task the runs share; refused when they differ in task, dataset or classes (nothing to compare)."""
    for what, of in (
        ("tasks", lambda r: r.config.get("task", "classify")),
        ("datasets", lambda r: r.config.get("data.dataset")),
        ("class counts", lambda r: len(r.summary.classes)),
    ):
        kinds = sorted({str(of(r)) for r in runs})
        if len(kinds) > 1:
            raise CnnlabError(
                f"these runs are not comparable: they have different {what} ({', '.join(kinds)}); "
                "compare runs of one task on one dataset"
            )
    return runs[0].config.get("task", "classify")


@dataclass
class Analysis:
    """Everything a comparison and its report are made of, read from run folders (and sweep.json if any)."""

    paths: list[Path]
    runs: list[Run]
    skipped: list[Run]
    variants: list[Variant]
    comparison: Comparison
    definition: Optional[SweepDef]


def analyse(
    paths: list[Path],
    metric_names: Optional[list[str]] = None,
    by: Optional[list[str]] = None,
    alpha: float = 0.05,
    stat: str = "final",
) -> Analysis:
    """Group the completed runs under `paths` into variants (a sweep's grid keys by default) and compare them on
    each of `metric_names` (at `stat`), by default on the final metrics of their task."""
    if not 0 < alpha < 1:
        raise CnnlabError(f"--alpha must be between 0 and 1 (got {alpha})")
    paths = [Path(p) for p in paths]
    definition = SweepDef.read(paths[0]) if len(paths) == 1 and (paths[0] / DEFINITION).exists() else None
    runs, skipped = load_runs(paths)
    if not runs:
        states = ", ".join(sorted({r.status for r in skipped})) or "none"
        raise CnnlabError(
            f"no completed runs under {', '.join(map(str, paths))} (runs found: {len(skipped)}, status {states})"
        )
    task = _one_kind(runs)
    order = None
    if definition is not None and definition.mode == "grid":
        by = by or [k for a in definition.axes for k in a.keys] or None
        order = {k: values for a in definition.axes for k, values in a.order().items()}
    variants = group(runs, by, order)
    columns = [(m, stat) for m in metric_names] if metric_names else default_columns(task)
    monitors = {r.monitor for r in runs}
    result = Comparison(
        alpha,
        [compare(variants, m, alpha, s) for m, s in columns],
        task,
        monitors.pop() if len(monitors) == 1 else None,
        [{"run": str(r.path), "status": r.status} for r in skipped],
    )
    return Analysis(paths, runs, skipped, variants, result, definition)
