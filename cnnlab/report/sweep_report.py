"""The report of a sweep or comparison: the grid, the table of variants with their statistics, the tests in
words, band plots of every metric, and links to each run's own report. HTML (images embedded) and Markdown."""
from __future__ import annotations

import os
from pathlib import Path

from cnnlab import metrics
from cnnlab.atomic import write_json, write_text
from cnnlab.report.run_report import TEMPLATES, embed_png, fmt
from cnnlab.sweep import stats
from cnnlab.sweep.collect import Run, brief, show
from cnnlab.sweep.compare import Analysis
from cnnlab.viz.bands import plot_bands

# band plots: per metric, its training, validation and test curves (those the runs recorded)
PLOTTED = tuple(metrics.split_key(s, m) for m in metrics.SPLIT_METRICS for s in metrics.SPLITS)


def _link(out_dir: Path, run: Run) -> str:
    return Path(os.path.relpath(run.path / "report.html", out_dir)).as_posix()


def _trials(analysis: Analysis, out_dir: Path) -> list[dict]:
    """An Optuna search's trials, best first: their searched values, status and objective."""
    from cnnlab.sweep.search import objective

    search = analysis.definition.base["search"]
    rows = []
    for run in sorted(analysis.runs + analysis.skipped, key=lambda r: r.path.name):
        value = objective(run.history, search)
        rows.append({"trial": run.path.name, "status": run.status, "value": value, "epochs": len(run.history),
                     "params": {k: run.config.get(k) for k in search["params"]}, "link": _link(out_dir, run)})
    sign = 1 if metrics.mode(search["metric"]) == "min" else -1
    worst = sign * float("inf")
    return sorted(rows, key=lambda r: sign * (worst if r["value"] is None else r["value"]))


def _objective_name(definition) -> str:
    from cnnlab.sweep.search import objective_name

    return objective_name(definition.base["search"])


def write_sweep_report(analysis: Analysis, out_dir: Path, log_x: bool = False) -> Path:
    """Draw the band plots into out_dir/figures and write compare.json, report.html and report.md there."""
    out_dir = Path(out_dir)
    result, definition = analysis.result, analysis.definition
    optuna_mode = definition is not None and definition.mode == "optuna"
    present = {k for r in analysis.runs + analysis.skipped for row in r.history for k in row}
    if optuna_mode:  # one curve per trial, pruned ones included: pruning shows as curves that stop early
        curves = [(r.path.name + ("" if r.status == "completed" else f" ({r.status})"), [r.history])
                  for r in sorted(analysis.runs + analysis.skipped, key=lambda r: r.path.name)]
    else:
        curves = [(v.name, [r.history for r in v.runs]) for v in analysis.variants]
    figures = []
    for key in PLOTTED:
        if key in present:
            path = plot_bands(curves, key, out_dir / "figures" / f"bands-{key}.png", log_x=log_x)
            figures.append({"title": metrics.label(key), "file": f"figures/{path.name}", "data": embed_png(path)})
    runs = [{"variant": v.name, "seed": r.config.get("seed"), "status": r.status, "path": str(r.path),
             "final": r.value(result["metric"], "final"), "best": r.value(result["metric"], "best"),
             "link": _link(out_dir, r)} for v in analysis.variants for r in v.runs]
    runs += [{"variant": "", "seed": r.config.get("seed"), "status": r.status, "path": str(r.path), "final": None,
              "best": None, "link": _link(out_dir, r)} for r in analysis.skipped]
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
        "fmt": fmt,
        "brief": brief,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "compare.json", result)
    write_text(out_dir / "report.html", TEMPLATES.get_template("sweep.html.j2").render(**context))
    write_text(out_dir / "report.md", TEMPLATES.get_template("sweep.md.j2").render(**context))
    return out_dir / "report.html"
