"""What a completed run's report shows from its best checkpoint and summary.json records with it.

A classifier: the first convolution's filters, the activations of the first and last convolution and
Grad-CAM for one fixed test image, the confusion matrix of the test split (counts, per-class accuracy)
and the most confident wrong predictions. A per-pixel task: its prediction pictures, and for segmentation
the IoU of each class. Every task: the sparsity of the weights (`figures.sparsity_threshold`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace

from cnnlab.data.root import data_root
from cnnlab.engine.run_setup import BuiltRun, build_run
from cnnlab.engine.restore import load_weights
from cnnlab.engine.evaluate import tally_split
from cnnlab.explain import explain_run
from cnnlab.explain.sparsity import sparsity
from cnnlab.report.predictions import draw_predictions
from cnnlab.records import RunSummary
from cnnlab.runfolder import RunFolder
from cnnlab.viz.figure import is_whole_png

FIXED_IMAGE = 0  # the test example every classification report shows


def _classifier(built: BuiltRun, run: RunFolder) -> dict:
    cfg = built.cfg
    record = explain_run(
        built.model,
        built.data.test,
        built.data.classes,
        run.figures,
        example=FIXED_IMAGE,
        sparsity_threshold=cfg.figures.sparsity_threshold,
        bf16=cfg.train.precision == "bf16",
    )
    matrix = dict(record["confusion"])
    per_class = matrix.pop("per_class_accuracy")
    return {
        "figures": [{**f, "file": f"figures/{f['file']}"} for f in record["figures"]],
        "test_confusion_at_best": matrix,
        "test_class_acc_at_best": per_class,
        "most_confused_at_best": record["most_confused"],
        "look_inside": {"layers": record["layers"], "image": record["image"]},
        "sparsity": record["sparsity"],
    }


def _per_pixel(built: BuiltRun, run: RunFolder) -> dict:
    out = {
        "figures": draw_predictions(built, run),
        "sparsity": sparsity(built.model, built.cfg.figures.sparsity_threshold),
    }
    if getattr(built.task, "iou", False):
        iou = built.task.class_iou(tally_split(built, built.data.test)).tolist()
        out["test_class_iou_at_best"] = {c: None if math.isnan(v) else v for c, v in zip(built.data.classes, iou)}
    return out


def best_checkpoint_record(built: BuiltRun, run: RunFolder) -> dict:
    """Draw into run/figures and return the keys summary.json adds; `built` is the run's own, as trained,
    and is left holding best.pt's weights."""
    load_weights(built, run.best_path)
    return _classifier(built, run) if built.task.name == "classify" else _per_pixel(built, run)


def redraw_damaged(run: RunFolder, summary: RunSummary) -> RunSummary:
    """`summary` with the best checkpoint's figures drawn again when one on disk is damaged (an empty PNG left by a
    kill of an older cnnlab mid-write), so that a report never embeds half a picture."""
    files = [run.path / f["file"] for f in summary.figures]
    damaged = [p for p in files if p.exists() and not is_whole_png(p)]
    if not damaged or not run.best_path.is_file():
        return summary
    print(f"notice: figure {damaged[0]} is damaged; drawing the figures of {run.best_path} again", file=sys.stderr)
    built = build_run(run.config(), data_root(), pretrained=False)  # best.pt's weights replace them
    return replace(summary, figures=best_checkpoint_record(built, run)["figures"])
