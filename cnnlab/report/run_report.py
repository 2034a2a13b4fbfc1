"""The report of one run: config, architecture table, curves, final metric table."""
from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Optional

import jinja2

from cnnlab import metrics
from cnnlab.atomic import write_text
from cnnlab.engine.summary import spread_line
from cnnlab.report.inside import redraw_damaged
from cnnlab.runfolder import RunFolder
from cnnlab.viz.curves import plot_metric

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("cnnlab", "report/templates"),
    autoescape=jinja2.select_autoescape(["html", "html.j2"]),  # the templates are named *.html.j2
    undefined=jinja2.StrictUndefined,
)


def embed_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def report_link(out_dir: Path, run_dir: Path) -> str:
    """A link from a report in `out_dir` to a run's report.html, relative, so that the folders can move together."""
    return Path(os.path.relpath(Path(run_dir, "report.html"), out_dir)).as_posix()


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


ARCH_COLUMNS = ("params", "trainable_params", "frozen_params", "buffers", "macs")


def architecture_table(rows: list[dict]) -> tuple[list[dict], dict]:
    """Rows with thousands separators and totals; a count an older run folder lacks shows as '-'.
    `split` is the row's parameters as 'trainable / frozen' (model.trainable)."""
    def show(v):
        return f"{v:,}" if isinstance(v, int) else "-"

    def with_split(counts: dict) -> dict:
        return {**counts, "split": f"{counts['trainable_params']} / {counts['frozen_params']}"}

    shown = [with_split({"name": r.get("name", ""), "type": r.get("type", ""),
                         "shape": " x ".join(map(str, r.get("output_shape") or [])),
                         **{c: show(r.get(c)) for c in ARCH_COLUMNS}}) for r in rows]
    totals = {c: show(sum(r[c] for r in rows)) if all(isinstance(r.get(c), int) for r in rows) else "-" for c in ARCH_COLUMNS}
    return shown, with_split(totals)


def transfer_table(summary: dict) -> list[tuple[str, str]]:
    """What a torchvision model started from and what trained: the pretrained record, heads, trainable parts."""
    transfer = summary.get("transfer")
    if not transfer:
        return []
    record = transfer.get("pretrained") or {}

    def names(values) -> str:
        return f"{len(values)}: {', '.join(values)}" if values else "none"

    rows = [("new head(s)", ", ".join(transfer["heads"])),
            ("trainable", transfer["trainable"] if isinstance(transfer["trainable"], str) else ", ".join(transfer["trainable"])),
            ("head alone for the first epochs", fmt(transfer.get("unfreeze_after"))),
            ("trainable / frozen parameters", f"{summary.get('trainable_params', 0):,} / {summary.get('frozen_params', 0):,}"),
            ("inputs normalised with", (summary.get("data") or {}).get("normalised_with", "-"))]
    if record:
        rows += [("pretrained", record["source"]), ("file read", fmt(record.get("file"))),
                 ("torchvision weights", fmt(record.get("weights"))), ("tensors loaded", fmt(record.get("loaded"))),
                 ("head tensors skipped (shape changed)", names(record.get("skipped_head"))),
                 ("missing from the file", names(record.get("missing"))),
                 ("unexpected in the file", names(record.get("unexpected"))),
                 ("parts not built", names(record.get("left_out"))) if record.get("left_out") else None]
    return [r for r in rows if r is not None]


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


def class_rows(confusion: dict) -> list[dict]:
    """Per class (a row of the confusion counts): its test examples, how many were predicted right, the share."""
    rows = []
    for i, (name, row) in enumerate(zip(confusion["classes"], confusion["counts"])):
        n = sum(row)
        rows.append({"name": name, "examples": n, "right": row[i], "accuracy": fmt(row[i] / n) if n else "-"})
    return rows


def embedded(run_path: Path, records: list[dict]) -> list[dict]:
    """Figure records (file relative to `run_path`) with their PNG embedded; figures no longer on disk left out."""
    return [{**fig, "data": embed_png(run_path / fig["file"])} for fig in records if (run_path / fig["file"]).exists()]


def peak_note(summary: dict) -> str:
    """Which peak the per-epoch share is of, in words ('' for a run recorded before peaks were)."""
    peak = summary.get("peak")
    if not peak:
        return ""
    return (f"Share of peak: training throughput (6 FLOPs per weight multiply-accumulate per training image) over "
            f"{peak['gflops']:,.1f} GFLOP/s, the {peak['precision']} {peak['size']}x{peak['size']} matrix product measured "
            f"on this machine ({peak['key']}; measured {peak['measured']})."
            + (" The machine was busy when it was measured, so the share may read high; the first run on a calm "
               "machine measures it again." if peak.get("busy") else ""))


def write_run_report(run_dir: Path, summary: Optional[dict] = None) -> Path:
    """Draw the figures into the run folder and write report.html and report.md beside them; of `summary` when
    given (the runner writes the report of a run's end before it records that end in summary.json)."""
    run = RunFolder.open(run_dir)
    history, summary = run.metrics(), run.summary() if summary is None else summary
    figures = []
    for metric in metrics.families(metrics.all_keys(history)):  # loss and accuracy; IoU too for segmentation
        title = f"{metrics.SPLIT_METRICS[metric].title} per epoch"
        path = plot_metric(history, metric, run.figures / f"{metric}.png", title=title)
        figures.append({"title": title, "file": f"figures/{path.name}", "data": embed_png(path)})
    pictures = embedded(run.path, redraw_damaged(run, summary).get("figures", []))
    iou = summary.get("test_class_iou_at_best") or {}
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
        "class_rows": class_rows(summary["test_confusion_at_best"]) if "test_confusion_at_best" in summary else [],
        "iou_rows": [(name, fmt(v)) for name, v in iou.items()],
        "sparsity": summary.get("sparsity"),
        "inside": summary.get("look_inside"),
        "peak_note": peak_note(summary),
        "final": final_table(summary),
        "transfer": transfer_table(summary),
        "figures": figures,
        "fmt": fmt,
        "spread": spread_line(summary["spread"]) if "spread" in summary else None,
    }
    html = TEMPLATES.get_template("run.html.j2").render(**context)
    write_text(run.path / "report.html", html)
    write_text(run.path / "report.md", TEMPLATES.get_template("run.md.j2").render(**context))
    return run.path / "report.html"
