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


SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
METRIC_NAMES = {"loss": "loss", "acc": "accuracy", "iou": "IoU", "miou": "mean IoU"}
EPOCH_EXTRAS = [("lr", "lr", 5), ("seconds", "seconds", 1), ("images_per_s", "images/s", 0), ("peak_mem_mb", "peak MB", 0)]


def metric_keys(row: dict) -> list[tuple[str, str]]:
    """(key, label) of every split metric a row holds, in a fixed order: train, val, test x loss, acc, iou, miou."""
    return [(f"{s}_{m}", f"{SPLIT_NAMES[s]} {METRIC_NAMES[m]}") for s in SPLIT_NAMES for m in METRIC_NAMES
            if f"{s}_{m}" in row]


def final_table(summary: dict) -> list[tuple[str, str]]:
    """The metric table every report ends with: final epoch, then the best checkpoint's test metrics."""
    final = summary.get("final") or {}
    rows = [(label, final.get(key)) for key, label in metric_keys(final)]
    monitor = dict(metric_keys(final)).get(summary.get("monitor", "val_acc"), "validation accuracy")
    rows.append((f"best {monitor} (epoch {summary.get('best_epoch')})", summary.get("best_value")))
    rows += [(f"{label} at best {monitor}", summary.get(f"{key}_at_best"))
             for key, label in metric_keys(final) if key.startswith("test_") and key != "test_loss"]
    return [(name, fmt(v)) for name, v in rows]


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
    if not history:
        return [], []
    keys = [("epoch", "epoch", 0)] + [(k, label, 4) for k, label in metric_keys(history[0])] + EPOCH_EXTRAS
    header = [label for _, label, _ in keys]
    return header, [[fmt(row.get(k), d) if d else str(round(row[k])) if k in row else "-" for k, _, d in keys] for row in history]


def write_run_report(run_dir: Path) -> Path:
    """Draw the figures into the run folder and write report.html and report.md beside them."""
    run = RunFolder.open(run_dir)
    history, summary = run.metrics(), run.summary()
    figures = []
    if history:
        for metric, title in (("loss", "Loss"), ("acc", "Accuracy")):
            path = plot_metric(history, metric, run.figures / f"{metric}.png", title=f"{title} per epoch")
            figures.append({"title": f"{title} per epoch", "file": f"figures/{path.name}", "data": embed_png(path)})
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
