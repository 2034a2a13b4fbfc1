"""`cnnlab explain`: a finished classification run brought back from one of its checkpoints, the look-inside
figures for one image drawn into RUN/explain/, and RUN/explain.html (figures embedded: one self-contained
file) and RUN/explain.json (the record) written beside them."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from cnnlab.atomic import write_json, write_text
from cnnlab.engine.restore import restore
from cnnlab.errors import CnnlabError
from cnnlab.records import RunSummary
from cnnlab.explain import explain_run
from cnnlab.explain.example import Example, file_example, split_example
from cnnlab.report.page import TEMPLATES
from cnnlab.report.templated import class_rows, embedded, fmt
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


def write_explain(run_dir: Path, data_root: Path, image: Optional[Path] = None, split: str = "test", index: int = 0,
                  layers: Optional[list[str]] = None, cam_layer: str = "last", checkpoint: str = "best") -> Path:
    """Draw the figures of the run's `checkpoint` for one image (a file, else example `index` of `split`) at
    `layers` (default: the first and last convolution); return the path of explain.html."""
    run = RunFolder.open(run_dir)
    if checkpoint not in CHECKPOINTS:
        raise CnnlabError(f"--checkpoint {checkpoint}: choose best or last")
    if not (run.checkpoints / f"{checkpoint}.pt").is_file():
        raise CnnlabError(f"{run.path} has no checkpoints/{checkpoint}.pt: the run ended before its first epoch; "
                          f"train it further (`cnnlab resume {run.path}`)")
    cfg = run.config()
    if cfg.task != "classify":
        raise CnnlabError(f"explain is for classification runs; this run's task is {cfg.task}, whose report shows "
                          "its predictions (`cnnlab layers` lists its layers)")
    built = restore(run, data_root, checkpoint)
    example = _example(built, image, split, index)
    out = run.path / "explain"
    for old in out.glob("*.png"):  # figures of an earlier explanation (other layers) must not linger
        old.unlink()
    record = explain_run(built.model, built.data.test, built.data.classes, out, layers, example, cam_layer,
                         sparsity_threshold=cfg.figures.sparsity_threshold, bf16=cfg.train.precision == "bf16")
    epoch, recorded = _checkpoint_facts(run.summary(), checkpoint)
    record = {"run": str(run.path), "checkpoint": checkpoint, "epoch": epoch, "recorded_test_acc": recorded,
              **record, "figures": [{**f, "file": f"explain/{f['file']}"} for f in record["figures"]]}
    write_json(run.path / "explain.json", record)
    html = TEMPLATES.get_template("explain.html.j2").render(
        name=cfg.name, run_id=run.path.name, record=record, figures=embedded(run.path, record["figures"]),
        class_rows=class_rows(record["confusion"]), fmt=fmt)
    write_text(run.path / "explain.html", html)
    return run.path / "explain.html"
