"""Bring a finished run back: built from its own config, with a checkpoint's weights."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.engine import checkpoint
from cnnlab.engine.run_setup import BuiltRun, build_run
from cnnlab.runfolder import RunFolder


def restore(run: RunFolder, data_root: Path, which: str = "best") -> BuiltRun:
    """The run's data and model (in eval mode) with the weights of checkpoints/<which>.pt."""
    cfg = run.config()
    run.check_model_source(cfg)
    built = build_run(cfg, data_root, pretrained=False)  # the checkpoint's weights replace them
    load_weights(built, run.checkpoints / f"{which}.pt")
    return built


def load_weights(built: BuiltRun, path: Path) -> None:
    built.model.load_state_dict(checkpoint.load(path)["model"])
    built.model.eval()


def predict(model, batches, autocast_bf16: bool = False) -> torch.Tensor:
    """The model's outputs for every example of a split, in order, as float32 on the CPU."""
    outs = []
    device_type = batches.device.type
    with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast_bf16):
        for x, _ in batches.batches():
            outs.append(model(x).float().cpu())
    return torch.cat(outs)
