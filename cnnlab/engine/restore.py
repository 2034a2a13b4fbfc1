"""Bring a finished run back: its config, its data splits and its model with a checkpoint's weights."""
from __future__ import annotations

from pathlib import Path

import torch

from cnnlab import data as data_mod
from cnnlab.engine import checkpoint
from cnnlab.device import pick_device
from cnnlab.models import create_model
from cnnlab.runfolder import RunFolder


def restore(run: RunFolder, data_root: Path, which: str = "best"):
    """(config, splits, model in eval mode) for `run`, with weights from checkpoints/<which>.pt."""
    cfg = run.config()
    device = pick_device(cfg.device)
    splits = data_mod.prepare(cfg, data_root, device)
    model = create_model(cfg.model, splits.shape, len(splits.classes))
    memory = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory)
    model.load_state_dict(checkpoint.load(run.checkpoints / f"{which}.pt", device)["model"])
    return cfg, splits, model.eval()


def predict(model, batches, autocast_bf16: bool = False) -> torch.Tensor:
    """The model's outputs for every example of a split, in order, as float32 on the CPU."""
    outs = []
    device_type = batches.device.type
    with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast_bf16):
        for x, _ in batches.batches():
            outs.append(model(x).float().cpu())
    return torch.cat(outs)
