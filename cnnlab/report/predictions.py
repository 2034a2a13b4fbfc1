"""Prediction pictures of a finished per-pixel run: its model on fixed validation and test images."""

from __future__ import annotations

import torch

from cnnlab.data.colour import decode, decode_targets
from cnnlab.engine.run_setup import BuiltRun
from cnnlab.metrics import SPLITS
from cnnlab.runfolder import RunFolder
from cnnlab.viz.predictions import colour_rows, segmentation_rows


def draw_predictions(built: BuiltRun, run: RunFolder) -> list[dict]:
    """Draw the predictions of `built` (a per-pixel run, holding the weights to show) into run/figures; the
    list of {file, title} that summary.json records."""
    task, cfg = built.task, built.cfg
    n = cfg.figures.count
    drawn = []
    for split in ("val", "test"):
        batches = getattr(built.data, split)
        x, y = batches.first(n)
        with torch.no_grad(), built.autocast():
            out = built.model(x).float()
        path = run.figures / f"{task.name}-{split}.png"
        if task.name == "colourize":
            palette = built.data.palette.to(built.device)
            how = f"annealed mean, T={cfg.figures.temperature:g}" if cfg.figures.temperature else "most likely colour"
            colour_rows(
                batches.images[:n],
                decode(out, palette, cfg.figures.temperature),
                decode_targets(y, palette),
                built.data.originals[split][:n],
                path,
                f"Colourization, {SPLITS[split]} images ({how})",
            )
        else:
            segmentation_rows(batches.images[:n], out.argmax(1), y, path, f"Segmentation, {SPLITS[split]} images")
        drawn.append({"file": f"figures/{path.name}", "title": f"{task.name} ({SPLITS[split]})"})
    return drawn
