"""The report of one run: config, architecture table, curves, final metric table."""
from __future__ import annotations

import base64
from pathlib import Path

import jinja2

from cnnlab.atomic import write_text
from cnnlab.runfolder import RunFolder
from cnnlab.viz.curves import plot_metric

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("cnnlab", "report/templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)


def embed_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def final_table(summary: dict) -> list[tuple[str, str]]:
    """The metric table every report ends with: final epoch, and test accuracy of the best checkpoint."""
    final = summary.get("final") or {}
    rows = [("train loss", final.get("train_loss")), ("train accuracy", final.get("train_acc")),
            ("validation loss", final.get("val_loss")), ("validation accuracy", final.get("val_acc")),
            ("test loss", final.get("test_loss")), ("test accuracy", final.get("test_acc")),
            (f"best validation accuracy (epoch {summary.get('best_epoch')})", summary.get("best_val_acc")),
            ("test accuracy at best validation", summary.get("test_acc_at_best"))]
    return [(name, fmt(v)) for name, v in rows]


def write_run_report(run_dir: Path) -> Path:
    """Draw the figures into the run folder and write report.html and report.md beside them."""
    run = RunFolder.open(run_dir)
    history, summary = run.metrics(), run.summary()
    figures = []
    if history:
        for metric, title in (("loss", "Loss"), ("acc", "Accuracy")):
            path = plot_metric(history, metric, run.figures / f"{metric}.png", title=f"{title} per epoch")
            figures.append({"title": title, "file": f"figures/{path.name}", "data": embed_png(path)})
    context = {
        "name": summary.get("name", run.path.parent.name),
        "run_id": run.path.name,
        "summary": summary,
        "config_text": run.config_path.read_text(),
        "architecture": run.architecture(),
        "history": history,
        "final": final_table(summary),
        "figures": figures,
        "fmt": fmt,
    }
    html = TEMPLATES.get_template("run.html.j2").render(**context)
    write_text(run.path / "report.html", html)
    write_text(run.path / "report.md", TEMPLATES.get_template("run.md.j2").render(**context))
    return run.path / "report.html"
