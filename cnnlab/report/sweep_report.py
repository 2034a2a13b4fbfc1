"""The report of a sweep or comparison: the grid, the table of variants with their statistics, the tests in
words, the compared metric against each numeric grid key, band plots of every metric, and links to each run's
own report. HTML (images embedded) and Markdown."""
from __future__ import annotations

from pathlib import Path

from cnnlab import metrics
from cnnlab.atomic import write_json, write_text
from cnnlab.report.run_report import TEMPLATES, embed_png, fmt, report_link
from cnnlab.sweep import stats
from cnnlab.sweep.collect import brief, show
from cnnlab.sweep.compare import Analysis
from cnnlab.viz.bands import plot_bands, plot_train_val
from cnnlab.viz.by_value import Points, plot_by_value

# band plots: per metric, its training, validation and test curves (those the runs recorded)
PLOTTED = tuple(metrics.split_key(s, m) for m in metrics.SPLIT_METRICS for s in metrics.SPLITS)


def _trials(analysis: Analysis, out_dir: Path) -> list[dict]:
    """An Optuna search's trials, best first: their searched values, status and objective."""
    from cnnlab.sweep.search import objective

    search = analysis.definition.base["search"]
    rows = []
    for run in sorted(analysis.runs + analysis.skipped, key=lambda r: r.path.name):
        value = objective(run.history, search)
        rows.append({"trial": run.path.name, "status": run.status, "value": value, "epochs": len(run.history),
                     "params": {k: run.config.get(k) for k in search["params"]}, "link": report_link(out_dir, run.path)})
    sign = 1 if metrics.mode(search["metric"]) == "min" else -1
    worst = sign * float("inf")
    return sorted(rows, key=lambda r: sign * (worst if r["value"] is None else r["value"]))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def by_value_series(result: dict) -> dict[str, dict[str, Points]]:
    """Per grid key whose values are all numbers: the compared metric of every run against that key's value,
    one series per combination of the other keys. Keys where no series has two values to join are left out."""
    variants = result["variants"]
    keys = [k for k in (variants[0]["config"] if variants else {})
            if all(_is_number(v["config"].get(k)) for v in variants)]
    found = {}
    for key in keys:
        series: dict[str, Points] = {}
        for v in variants:
            label = " ".join(f"{k}={show(x)}" for k, x in v["config"].items() if k != key)
            series.setdefault(label, []).append((v["config"][key], v["values"]))
        if any(len({x for x, _ in points}) > 1 for points in series.values()):
            found[key] = series
    return found


def _objective_name(definition) -> str:
    from cnnlab.sweep.search import objective_name

    return objective_name(definition.base["search"])


def draw_figures(analysis: Analysis, out_dir: Path, log_x: bool = False) -> list[dict]:
    """The compared metric against each numeric grid key, each metric's training and validation curves of every
    variant in one figure, then the band plot of every metric the runs recorded."""
    result, definition = analysis.result, analysis.definition
    optuna_mode = definition is not None and definition.mode == "optuna"
    present = {k for r in analysis.runs + analysis.skipped for row in r.history for k in row}
    if optuna_mode:  # one curve per trial, pruned ones included: pruning shows as curves that stop early
        curves = [(r.path.name + ("" if r.status == "completed" else f" ({r.status})"), [r.history])
                  for r in sorted(analysis.runs + analysis.skipped, key=lambda r: r.path.name)]
    else:
        curves = [(v.name, [r.history for r in v.runs]) for v in analysis.variants]
    folder = out_dir / "figures"
    drawn = [(f"{metrics.label(result['metric'])} ({result['stat']}) against {key}",
              plot_by_value(series, key, result["metric"], result["stat"], folder / f"by-{key}.png"))
             for key, series in ({} if optuna_mode else by_value_series(result)).items()]
    drawn += [(f"{metrics.SPLIT_METRICS[m].axis_label()}: training and validation",
               plot_train_val(curves, m, folder / f"train-val-{m}.png", log_x=log_x))
              for m in metrics.SPLIT_METRICS if {metrics.split_key("train", m), metrics.split_key("val", m)} <= present]
    drawn += [(metrics.label(key), plot_bands(curves, key, folder / f"bands-{key}.png", log_x=log_x))
              for key in PLOTTED if key in present]
    return [{"title": title, "file": f"figures/{path.name}", "data": embed_png(path)} for title, path in drawn]


def write_sweep_report(analysis: Analysis, out_dir: Path, log_x: bool = False) -> Path:
    """Draw the figures into out_dir/figures and write compare.json, report.html and report.md there."""
    out_dir = Path(out_dir)
    result, definition = analysis.result, analysis.definition
    optuna_mode = definition is not None and definition.mode == "optuna"
    figures = draw_figures(analysis, out_dir, log_x)
    runs = [{"variant": v.name, "seed": r.config.get("seed"), "status": r.status, "path": str(r.path),
             "final": r.value(result["metric"], "final"), "best": r.value(result["metric"], "best"),
             "link": report_link(out_dir, r.path)} for v in analysis.variants for r in v.runs]
    runs += [{"variant": "", "seed": r.config.get("seed"), "status": r.status, "path": str(r.path), "final": None,
              "best": None, "link": report_link(out_dir, r.path)} for r in analysis.skipped]
    context = {
        "title": definition.name if definition else "comparison",
        "definition": definition,
        "axes": [(a.key, ", ".join(show(v) for v in a.values)) for a in definition.axes] if definition else [],
        "result": result,
        "metric_label": metrics.label(result["metric"]),
        "objective": _objective_name(definition) if optuna_mode else None,
        "figures": figures,
        "runs": runs,
        "trials": _trials(analysis, out_dir) if optuna_mode else [],
        "power": stats.POWER,
        "large_sample": stats.LARGE_SAMPLE,
        "test_name": stats.test_name,
        "fmt": fmt,
        "brief": brief,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "compare.json", result)
    write_text(out_dir / "report.html", TEMPLATES.get_template("sweep.html.j2").render(**context))
    write_text(out_dir / "report.md", TEMPLATES.get_template("sweep.md.j2").render(**context))
    return out_dir / "report.html"
