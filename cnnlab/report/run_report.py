"""The report of one run: config, architecture table, curves, final metric table."""
from __future__ import annotations

import base64
from pathlib import Path

import jinja2

from cnnlab import metrics
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
    """The metric table every report ends with: final epoch, the best checkpoint's test metrics, then the times
    (startup, training, training until each target test accuracy)."""
    final = summary.get("final") or {}
    keys = metrics.split_keys(final)
    rows = [(metrics.label(key), final.get(key)) for key in keys]
    monitor = metrics.label(summary.get("monitor", "val_acc"))
    rows.append((f"best {monitor} (epoch {summary.get('best_epoch')})", summary.get("best_value")))
    rows += [(f"{metrics.label(key)} at best {monitor}", summary.get(f"{key}_at_best"))
             for key in keys if key.startswith("test_") and key != "test_loss"]
    timing = [("startup (s): process start to the first step", summary.get("startup_seconds")),
              ("training time (s), evaluation apart", summary.get("train_seconds"))]
    timing = [(name, fmt(v, 1)) for name, v in timing if v is not None]  # older run folders lack them
    timing += [(f"training time (s) until test accuracy {target}", "not reached" if s is None else fmt(s, 1))
               for target, s in (summary.get("time_to") or {}).items()]
    return [(name, fmt(v)) for name, v in rows] + timing


ARCH_COLUMNS = ("params", "buffers", "macs")


def architecture_table(rows: list[dict]) -> tuple[list[dict], dict]:
    """Rows with thousands separators and totals; a count an older run folder lacks shows as '-'."""
    def show(v):
        return f"{v:,}" if isinstance(v, int) else "-"

    shown = [{"name": r.get("name", ""), "type": r.get("type", ""), "shape": " x ".join(map(str, r.get("output_shape") or [])),
              **{c: show(r.get(c)) for c in ARCH_COLUMNS}} for r in rows]
    totals = {c: show(sum(r[c] for r in rows)) if all(isinstance(r.get(c), int) for r in rows) else "-" for c in ARCH_COLUMNS}
    return shown, totals


def epoch_table(history: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One row per epoch: every split metric, then the learning rate and the timings, as the vocabulary shows them."""
    if not history:
        return [], []
    present = metrics.all_keys(history)
    keys = metrics.split_keys(present) + metrics.epoch_keys(present)
    header = ["epoch"] + [metrics.label(k, unit=k in metrics.EPOCH_METRICS) for k in keys]

    def cell(row: dict, key: str) -> str:
        if key not in row:
            return "-"
        d = metrics.digits(key)
        return fmt(row[key], d) if d else str(round(row[key]))

    return header, [[str(row["epoch"])] + [cell(row, k) for k in keys] for row in history]


def write_run_report(run_dir: Path) -> Path:
    """Draw the figures into the run folder and write report.html and report.md beside them."""
    run = RunFolder.open(run_dir)
    history, summary = run.metrics(), run.summary()
    figures = []
    for metric in metrics.families(metrics.all_keys(history)):  # loss and accuracy; IoU too for segmentation
        title = f"{metrics.SPLIT_METRICS[metric].title} per epoch"
        path = plot_metric(history, metric, run.figures / f"{metric}.png", title=title)
        figures.append({"title": title, "file": f"figures/{path.name}", "data": embed_png(path)})
    pictures = [{**fig, "data": embed_png(run.path / fig["file"])} for fig in summary.get("figures", [])
                if (run.path / fig["file"]).exists()]
    header, epoch_rows = epoch_table(history)
    arch_rows, arch_total = architecture_table(run.architecture())
    context = {
        "name": summary.get("name", run.path.parent.name),
        "run_id": run.path.name,
        "summary": summary,
        "config_text": run.config_path.read_text(),
        "architecture": arch_rows,
        "architecture_total": arch_total,
        "epoch_header": header,
        "epoch_rows": epoch_rows,
        "pictures": pictures,
        "final": final_table(summary),
        "figures": figures,
        "fmt": fmt,
    }
    html = TEMPLATES.get_template("run.html.j2").render(**context)
    write_text(run.path / "report.html", html)
    write_text(run.path / "report.md", TEMPLATES.get_template("run.md.j2").render(**context))
    return run.path / "report.html"
