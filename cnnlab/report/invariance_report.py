"""The report of an invariance experiment: two runs, with and without y = a*x + b, and how far they moved."""
from __future__ import annotations

from pathlib import Path

from cnnlab import metrics
from cnnlab.atomic import write_json, write_text
from cnnlab.report.page import TEMPLATES, report_link
from cnnlab.report.templated import embed_png, fmt
from cnnlab.runfolder import RunFolder
from cnnlab.viz.curves import plot_runs


def write_invariance_report(folder: Path, comparison: dict, plain: RunFolder, moved: RunFolder) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "comparison.json", comparison)
    label = f"a={comparison['affine_a']:g}, b={comparison['affine_b']:g}"
    histories = {"plain": plain.metrics(), label: moved.metrics()}
    figures = []
    for metric in metrics.families(histories["plain"][0]) if histories["plain"] else []:
        title = metrics.SPLIT_METRICS[metric].title
        path = plot_runs(histories, metric, folder / "figures" / f"{metric}.png", f"{title}: plain vs {label}")
        figures.append({"title": title, "file": f"figures/{path.name}", "data": embed_png(path)})
    context = {"c": comparison, "label": label, "figures": figures, "fmt": fmt,
               "plain_report": report_link(folder, plain.path), "moved_report": report_link(folder, moved.path)}
    write_text(folder / "report.html", TEMPLATES.get_template("invariance.html.j2").render(**context))
    write_text(folder / "report.md", TEMPLATES.get_template("invariance.md.j2").render(**context))
    return folder / "report.html"
