"""Scoring a split: the model's outputs (averaged over mirrored and shifted views with test-time augmentation),
tallied by the task, on batches of one shape when the run asks for fixed shapes."""

from __future__ import annotations

from typing import Optional

import torch
from torch.nn import functional as F


def mirrored(model, x: torch.Tensor) -> torch.Tensor:
    """The mean of the outputs on x and on x mirrored left-right (per-pixel outputs mirrored back)."""
    out, flipped = model(x).float(), model(x.flip(3)).float()
    return (out + (flipped.flip(3) if flipped.dim() == 4 else flipped)) / 2


def tta_outputs(model, x: torch.Tensor, tta: str) -> torch.Tensor:
    """Outputs under test-time augmentation `tta`: none; flip (x and its mirror image); flip_translate (half that,
    half the same on x shifted one pixel up-left and one pixel down-right, the border reflected)."""
    if tta == "none":
        return model(x)
    if tta == "flip":
        return mirrored(model, x)
    h, w = x.shape[2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = (mirrored(model, padded[:, :, :h, :w]) + mirrored(model, padded[:, :, 2:, 2:])) / 2
    return (mirrored(model, x) + shifted) / 2


def tally_split(built, batches, spread=None, tta: Optional[str] = None) -> dict[str, torch.Tensor]:
    """The task's tally over every example of a split, in eval mode, with the run's test-time augmentation and the
    plain cross-entropy (no label smoothing); with
    train.drop_last the last batch is padded to the full batch size (so every batch has one shape) and the padding is
    not scored. While a spread run trains (`spread` given), each process tallies its share and the tallies are
    summed. `tta` overrides the run's train.tta."""
    built.model.eval()
    tally = built.task.new_tally(built.device)
    rank, world = (spread.rank, spread.world) if spread is not None else (0, 1)
    with torch.no_grad(), built.autocast():
        for x, y in batches.batches(rank=rank, world=world, pad_last=built.cfg.train.drop_last):
            out = tta_outputs(built.model, x, tta or built.cfg.train.tta)[: len(y)]
            built.task.update(tally, out, y, built.task.loss(out, y, smoothed=False))
    return tally if spread is None else spread.sum_tally(tally)


def evaluate(built, batches, tta: Optional[str] = None) -> dict[str, float]:
    """The task's metrics on a split (summed over the processes of a spread run); `tta` overrides train.tta."""
    return built.task.result(tally_split(built, batches, built.spread, tta))
