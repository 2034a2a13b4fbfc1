"""The report of a sweep or comparison: what was run (the grid or the Optuna search), the comparison's blocks,
the headline metric against each numeric grid key, band plots of every metric, and a link to each run's report."""

from __future__ import annotations

from pathlib import Path

from cnnlab import metrics
from cnnlab.document import Block, Figure, Fixed, Heading, Link, Table, Text
from cnnlab.records import MetricComparison
from cnnlab.report.compare_blocks import STAT_WORDS, comparison_blocks
from cnnlab.report.page import report_link, write_report
from cnnlab.sweep.collect import brief, show
from cnnlab.sweep.compare import Analysis
from cnnlab.viz.bands import plot_bands, plot_train_val
from cnnlab.viz.by_value import Points, plot_by_value

# band plots: per metric, its training, validation and test curves (those the runs recorded)
PLOTTED = tuple(metrics.split_key(s, m) for m in metrics.SPLIT_METRICS for s in metrics.SPLITS)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def by_value_series(c: MetricComparison) -> dict[str, dict[str, Points]]:
    """Per grid key whose values are all numbers: the compared metric of every run against that key's value,
    one series per combination of the other keys. Keys where no series has two values to join are left out."""
    variants = c.variants
    keys = [k for k in (variants[0].config if variants else {}) if all(_is_number(v.config.get(k)) for v in variants)]
    found = {}
    for key in keys:
        series: dict[str, Points] = {}
        for v in variants:
            label = " ".join(f"{k}={show(x)}" for k, x in v.config.items() if k != key)
            series.setdefault(label, []).append((v.config[key], v.values))
        if any(len({x for x, _ in points}) > 1 for points in series.values()):
            found[key] = series
    return found


def _optuna(analysis: Analysis) -> bool:
    return analysis.definition is not None and analysis.definition.mode == "optuna"


def draw_figures(analysis: Analysis, out_dir: Path, log_x: bool = False) -> list[Figure]:
    """The headline metric against each numeric grid key, each metric's training and validation curves of every
    variant in one figure, then the band plot of every metric the runs recorded."""
    headline = analysis.comparison.headline
    present = {k for r in analysis.runs + analysis.skipped for row in r.history for k in row}
    if _optuna(analysis):  # one curve per trial, pruned ones included: pruning shows as curves that stop early
        curves = [
            (r.path.name + ("" if r.status == "completed" else f" ({r.status})"), [r.history])
            for r in sorted(analysis.runs + analysis.skipped, key=lambda r: r.path.name)
        ]
    else:
        curves = [(v.name, [r.history for r in v.runs]) for v in analysis.variants]
    folder = out_dir / "figures"
    drawn = [
        (
            f"{metrics.label(headline.metric)} ({STAT_WORDS[headline.stat]}) against {key}",
            plot_by_value(series, key, headline.metric, headline.stat, folder / f"by-{key}.png"),
        )
        for key, series in ({} if _optuna(analysis) else by_value_series(headline)).items()
    ]
    drawn += [
        (
            f"{metrics.SPLIT_METRICS[m].axis_label()}: training and validation of every variant "
            "(training dashed, validation solid)",
            plot_train_val(curves, m, folder / f"train-val-{m}.png", log_x=log_x),
        )
        for m in metrics.SPLIT_METRICS
        if {metrics.split_key("train", m), metrics.split_key("val", m)} <= present
    ]
    drawn += [
        (
            f"{metrics.label(key)}: mean over seeds, the band from min to max",
            plot_bands(curves, key, folder / f"bands-{key}.png", log_x=log_x),
        )
        for key in PLOTTED
        if key in present
    ]
    return [Figure(caption, png, png.with_suffix(".svg"), png.with_suffix(".pdf")) for caption, png in drawn]


def definition_blocks(analysis: Analysis) -> list[Block]:
    d = analysis.definition
    if d is None:
        return []
    with_overrides = f" with {' '.join(d.overrides)}" if d.overrides else ""
    if d.mode == "grid":
        what = (
            f"{len(d.cells)} runs: every combination of the grid, each with seed{'s' if len(d.seeds) > 1 else ''} "
            f"{', '.join(map(str, d.seeds))}"
        )
    else:
        from cnnlab.sweep.search import objective_name

        search = d.base["search"]
        what = (
            f"an Optuna search of {d.trials} trials ({search['sampler']} sampler, {search['pruner']} pruner), "
            f"optimising the {objective_name(search)}"
        )
    lines = [f"Sweep of {d.experiment}{with_overrides}: {what}. Created {d.created}."]
    if d.command:
        lines.append(f"Command: {' '.join(d.command)}")
    out: list[Block] = [Text(lines)]
    if d.axes:
        rows = [[a.key, ", ".join(show(v) for v in a.values)] for a in d.axes] + [
            ["seed", ", ".join(map(str, d.seeds))]
        ]
        out.append(Table("Grid", ["key", "values"], rows, name="grid"))
    return out


def trials_blocks(analysis: Analysis, out_dir: Path) -> list[Block]:
    """An Optuna search's trials, best first: their searched values, status and objective."""
    if not _optuna(analysis):
        return []
    from cnnlab.sweep.search import objective

    search = analysis.definition.base["search"]
    sign = 1 if metrics.mode(search["metric"]) == "min" else -1
    rows = []
    for run in analysis.runs + analysis.skipped:
        value = objective(run.history, search)
        rows.append(
            [
                Link(run.path.name, report_link(out_dir, run.path)),
                run.status,
                len(run.history),
                value,
                *(brief(run.config.get(k)) for k in search["params"]),
            ]
        )
    rows.sort(key=lambda r: sign * (sign * float("inf") if r[3] is None else r[3]))
    return [
        Table("Trials, best first", ["trial", "status", "epochs", "objective", *search["params"]], rows, name="trials"),
        Text(
            [
                "Objective: over the epochs a trial ran. A pruned trial stopped early because its per-epoch "
                "validation metric lagged the trials before it."
            ],
            note=True,
        ),
    ]


def runs_table(analysis: Analysis, out_dir: Path) -> Table:
    headline = analysis.comparison.headline
    d = metrics.digits(headline.metric) or 1

    def value(run, stat):
        v = run.value(headline.metric, stat)
        return None if v is None else Fixed(v, d)

    rows = [
        [
            v.name,
            r.config.get("seed"),
            r.status,
            value(r, "final"),
            value(r, "best"),
            Link(str(r.path), report_link(out_dir, r.path)),
        ]
        for v in analysis.variants
        for r in v.runs
    ]
    rows += [
        ["", r.config.get("seed"), r.status, None, None, Link(str(r.path), report_link(out_dir, r.path))]
        for r in analysis.skipped
    ]
    return Table(
        "Runs",
        ["variant", "seed", "status", f"final {headline.metric}", f"best {headline.metric}", "run folder"],
        rows,
        name="runs",
    )


def sweep_blocks(analysis: Analysis, out_dir: Path, log_x: bool = False) -> list[Block]:
    title = analysis.definition.name if analysis.definition else "comparison"
    return [
        Heading(title, 1),
        *definition_blocks(analysis),
        *trials_blocks(analysis, out_dir),
        Heading("Comparison"),
        *comparison_blocks(analysis.comparison),
        Heading("Curves"),
        *draw_figures(analysis, out_dir, log_x),
        runs_table(analysis, out_dir),
    ]


def write_sweep_report(
    analysis: Analysis, out_dir: Path, log_x: bool = False, formats: tuple = ("html", "md")
) -> dict[str, Path]:
    """Draw the figures into out_dir/figures and write compare.json and the report there."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    analysis.comparison.write(out_dir / "compare.json")
    title = f"cnnlab {'sweep' if analysis.definition else 'comparison'}: " + (
        analysis.definition.name if analysis.definition else ", ".join(analysis.comparison.variant_names)
    )
    return write_report(out_dir, title, sweep_blocks(analysis, out_dir, log_x), formats)
