"""`cnnlab lr-find`: the learning-rate range test of an experiment (cnnlab.engine.lr_find), with its figure and
record written to a folder. Nothing of a run is made or changed: the model is built, ramped and dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from cnnlab.atomic import write_json
from cnnlab.engine.run_setup import build_run
from cnnlab.engine.flags import torch_flags
from cnnlab.engine.lr_find import LRFind, lr_find
from cnnlab.viz.figure import write_png
from cnnlab.viz.lr_find import draw_lr_find


def find_lr(
    cfg, data_root: Path, out: Optional[Path] = None, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100
) -> LRFind:
    """The range test of `cfg`'s model, optimizer and training data; with `out`, lr_find.png and lr_find.json
    (the rates, losses, suggestion and config) are written there."""
    with torch_flags(cfg.deterministic):
        result = lr_find(build_run(cfg, data_root), start_lr, end_lr, steps)
    if out is not None:
        write_png(draw_lr_find(result, f"learning-rate range test: {cfg.name}"), Path(out) / "lr_find.png")
        write_json(Path(out) / "lr_find.json", {**result.as_dict(), "config": cfg.model_dump(mode="json")})
    return result
