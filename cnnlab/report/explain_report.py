"""`cnnlab explain`: a finished classification run brought back from one of its checkpoints, the look-inside
figures for one image drawn into RUN/explain/, and RUN/explain.html (figures embedded: one self-contained
file) and RUN/explain.json (the record) written beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from cnnlab.atomic import write_json
from cnnlab.document import Block, Figure, Heading, Text
from cnnlab.engine.restore import restore
from cnnlab.errors import CnnlabError
from cnnlab.records import RunSummary
from cnnlab.explain import explain_run
from cnnlab.explain.example import Example, file_example, split_example
from cnnlab.report.page import write_report
from cnnlab.report.run_blocks import class_accuracy_table, sparsity_blocks
from cnnlab.runfolder import RunFolder

CHECKPOINTS = ("best", "last")
SPLITS = ("train", "val", "test")


def _checkpoint_facts(summary: RunSummary, which: str) -> tuple[Optional[int], Optional[float]]:
    """(epoch, recorded test accuracy) of checkpoint `which`, as summary.json tells them."""
    if which == "best":
        return summary.best_epoch, summary.at("test_acc")
    return summary.epochs_done, (summary.final or {}).get("test_acc")


def _example(built, image: Optional[Path], split: str, index: int) -> Example:
    if image is not None:
        return file_example(image, built.data.test)
    if split not in SPLITS:
        raise CnnlabError(f"--split {split}: choose one of {', '.join(SPLITS)}")
    return split_example(getattr(built.data, split), index, split)


def write_explain(
    run_dir: Path,
    data_root: Path,
    image: Optional[Path] = None,
    split: str = "test",
    index: int = 0,
    layers: Optional[list[str]] = None,
    cam_layer: str = "last",
    checkpoint: str = "best",
) -> Path:
    """Draw the figures of the run's `checkpoint` for one image (a file, else example `index` of `split`) at
    `layers` (default: the first and last convolution); return the path of explain.html."""
    run = RunFolder.open(run_dir)
    if checkpoint not in CHECKPOINTS:
        raise CnnlabError(f"--checkpoint {checkpoint}: choose best or last")
    if not (run.checkpoints / f"{checkpoint}.pt").is_file():
        raise CnnlabError(
            f"{run.path} has no checkpoints/{checkpoint}.pt: the run ended before its first epoch; "
            f"train it further (`cnnlab resume {run.path}`)"
        )
    cfg = run.config()
    if cfg.task != "classify":
        raise CnnlabError(
            f"explain is for classification runs; this run's task is {cfg.task}, whose report shows "
            "its predictions (`cnnlab layers` lists its layers)"
        )
    built = restore(run, data_root, checkpoint)
    example = _example(built, image, split, index)
    out = run.path / "explain"
    for old in out.glob("*.png"):  # figures of an earlier explanation (other layers) must not linger
        old.unlink()
    record = explain_run(
        built.model,
        built.data.test,
        built.data.classes,
        out,
        layers,
        example,
        cam_layer,
        sparsity_threshold=cfg.figures.sparsity_threshold,
        bf16=cfg.train.precision == "bf16",
    )
    epoch, recorded = _checkpoint_facts(run.summary(), checkpoint)
    record = {
        "run": str(run.path),
        "checkpoint": checkpoint,
        "epoch": epoch,
        "recorded_test_acc": recorded,
        **record,
        "figures": [{**f, "file": f"explain/{f['file']}"} for f in record["figures"]],
    }
    write_json(run.path / "explain.json", record)
    blocks = explain_blocks(cfg.name, run, record)
    return write_report(run.path, f"cnnlab explain: {cfg.name} / {run.path.name}", blocks, ("html",), "explain")["html"]


def explain_blocks(name: str, run: RunFolder, record: dict) -> list[Block]:
    """The explanation of one image: filters, activations and Grad-CAM, then the test split's confusion."""
    image, layers, confusion = record["image"], record["layers"], record["confusion"]
    figures = [f for f in record["figures"] if (run.path / f["file"]).exists()]
    true = (
        f", true class {image['true']} (p = {image['true_probability']:.3f})" if image.get("true") is not None else ""
    )
    held = f" (the module that ends with {layers['last_conv']})" if layers["last"] != layers["last_conv"] else ""
    recorded = record["recorded_test_acc"]
    return [
        Heading(f"{name} / {run.path.name}", 1),
        Text(
            [
                f"Checkpoint {record['checkpoint']} (epoch {record['epoch']}). Image: {image['source']}; predicted "
                f"{image['predicted']} with p = {image['probability']:.3f}{true}."
            ]
        ),
        Text(
            [
                f"Layers shown: {', '.join(layers['shown'])}; Grad-CAM at {layers['cam']}. The first convolution is "
                f"{layers['first']}, the last {layers['last']}{held}. `cnnlab layers {record['run']}` lists every name "
                "--layer takes."
            ],
            note=True,
        ),
        Heading("Filters, activations, class activation maps"),
        *(Figure(f.get("caption") or f["title"], run.path / f["file"]) for f in figures if f.get("of") != "test split"),
        Heading("Confusion on the test split"),
        Text(
            [
                f"{confusion['total']} test examples, accuracy {confusion['accuracy']:.4f}"
                + (f" (recorded during training for this checkpoint: {recorded:.4f})" if recorded is not None else "")
                + "."
            ]
        ),
        *(Figure(f.get("caption") or f["title"], run.path / f["file"]) for f in figures if f.get("of") == "test split"),
        class_accuracy_table(confusion, "Accuracy per class"),
        *sparsity_blocks(record["sparsity"]),
        Text(["The record is in explain.json beside this file."], note=True),
    ]
