"""What happens before a run's first step, and when its clock starts: summary.json's startup_seconds runs from
the process's start (imports, data, model, warm-up) to the first training step, apart from the training time."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from cnnlab.engine.evaluate import tta_outputs

_IMPORTED = time.time()
_first_run = True


def process_start() -> float:
    """When this process started (time.time() units): from /proc where there is one,
    else when this module was imported."""
    try:
        fields = Path("/proc/self/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])  # field 22 of stat(5): start time after boot, in clock ticks
        uptime = float(Path("/proc/uptime").read_text(encoding="ascii").split()[0])
    except (OSError, IndexError, ValueError):
        return _IMPORTED
    return time.time() - (uptime - started_ticks / os.sysconf("SC_CLK_TCK"))


def clock_origin() -> float:
    """Where a run's startup begins: the process's start for its first run, the call itself for later runs of the
    same process (a sweep worker trains many)."""
    global _first_run
    origin = process_start() if _first_run else time.time()
    _first_run = False
    return origin


def needs_warm_up(built) -> bool:
    """On a GPU cuDNN tries kernels for each new shape, and torch.compile compiles on the first call; on a CPU
    without compilation the first step costs what the others do."""
    return built.device.type == "cuda" or built.cfg.train.compile


def warm_up(built) -> None:
    """One training forward and backward (no optimizer step) and one evaluation batch of the run's shapes, then the
    weights, batch-norm statistics and gradients put back: the first-shape costs are paid before the clock starts."""
    model, cfg = built.model, built.cfg
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = next(iter(built.data.train.batches(torch.Generator().manual_seed(0))))
    model.train()
    with built.autocast():
        loss = built.task.loss(built.forward(x), y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    model.eval()
    x, _ = next(iter(built.data.val.batches(pad_last=cfg.train.drop_last)))
    with torch.no_grad(), built.autocast():
        tta_outputs(model, x, cfg.train.tta)
    model.load_state_dict(kept)
    if built.device.type == "cuda":
        torch.cuda.synchronize(built.device)
