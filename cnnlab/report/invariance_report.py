"""The report of an invariance experiment: two runs, with and without y = a*x + b, how far they moved, and why
(the transform traced through the built network: cnnlab.report.invariance)."""

from __future__ import annotations

from pathlib import Path

from cnnlab import metrics
from cnnlab.atomic import write_json
from cnnlab.document import Block, Figure, Fixed, Heading, Link, Table, Text
from cnnlab.report.page import report_link, write_report
from cnnlab.runfolder import RunFolder
from cnnlab.viz.curves import plot_runs


def invariance_blocks(folder: Path, c: dict, label: str, figures: list[Figure]) -> list[Block]:
    o = c["outputs"]
    shift = c["curves"].get("val_acc", {}).get("max_abs_diff")
    measured = (
        f"Two runs with the same seed and data: one plain, one with every input transformed by y = a*x + b "
        f"({label}). The validation accuracy curves differ by at most "
        + (f"{shift:.4f}" if shift is not None else "- (no validation accuracy recorded)")
        + f", the final test outputs by at most {o['max_abs_logit_diff']:.4f} in logits (mean "
        f"{o['mean_abs_logit_diff']:.4f}, against a mean |logit| of {o['mean_abs_logit']:.4f}), and the two "
        f"models agree on {100 * o['prediction_agreement']:.2f}% of their predictions."
    )
    curves = [
        [metrics.label(key), Fixed(d["max_abs_diff"], 6), Fixed(d["final_abs_diff"], 6)]
        for key, d in c["curves"].items()
    ]
    outputs = [
        ["test outputs compared", o["test_outputs"]],
        ["largest |logit difference|", Fixed(o["max_abs_logit_diff"], 6)],
        ["mean |logit difference|", Fixed(o["mean_abs_logit_diff"], 6)],
        ["mean |logit| (for scale)", Fixed(o["mean_abs_logit"], 4)],
        ["predictions that agree (%)", Fixed(100 * o["prediction_agreement"], 2)],
    ]
    runs = [
        ["plain", Link(c["plain_run"], report_link(folder, Path(c["plain_run"])))],
        [label, Link(c["affine_run"], report_link(folder, Path(c["affine_run"])))],
    ]
    return [
        Heading(f"Input transform y = a*x + b, {label}", 1),
        Text([measured]),
        Text([" ".join(c["verdict"])]),
        Heading("Curves"),
        *figures,
        Heading("How far the curves moved"),
        Table("", ["metric", "largest |difference| over epochs", "final |difference|"], curves, name="curves"),
        Heading("How far the outputs moved"),
        Table("", ["", ""], outputs, name="outputs"),
        Table("Runs", ["", "run folder"], runs, name="runs"),
    ]


def write_invariance_report(folder: Path, comparison: dict, plain: RunFolder, moved: RunFolder) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "comparison.json", comparison)
    label = f"a={comparison['affine_a']:g}, b={comparison['affine_b']:g}"
    histories = {"plain": plain.metrics(), label: moved.metrics()}
    figures = []
    for metric in metrics.families(histories["plain"][0]) if histories["plain"] else []:
        title = f"{metrics.SPLIT_METRICS[metric].title}: plain vs {label}"
        png = plot_runs(histories, metric, folder / "figures" / f"{metric}.png", title)
        figures.append(
            Figure(
                title + " (solid: validation, dashed: training)", png, png.with_suffix(".svg"), png.with_suffix(".pdf")
            )
        )
    blocks = invariance_blocks(folder, comparison, label, figures)
    return write_report(folder, f"cnnlab invariance report: y = a*x + b with {label}", blocks)["html"]
