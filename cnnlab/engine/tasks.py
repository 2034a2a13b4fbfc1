"""What is learned and how it is scored. Classification here; per-pixel tasks fit the same interface.

A task turns model outputs and targets into a loss, and tallies metrics on the device (no sync per
batch) into a dict with the keys every run folder uses: loss, acc (and more for dense tasks).
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F


class ClassificationTask:
    """Cross-entropy over classes; accuracy is the share of top-1 predictions that are right."""

    name = "classify"

    def __init__(self, num_classes: int, label_smoothing: float = 0.0):
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing

    @property
    def expected_initial_loss(self) -> float:
        """An untrained model predicts about uniformly: loss ln(K)."""
        return math.log(self.num_classes)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets, label_smoothing=self.label_smoothing)

    def new_tally(self, device) -> dict[str, torch.Tensor]:
        return {k: torch.zeros((), device=device, dtype=torch.float64) for k in ("loss_sum", "correct", "count")}

    def update(self, tally: dict, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        n = targets.shape[0]
        tally["loss_sum"] += loss.detach().double() * n
        tally["correct"] += (outputs.argmax(1) == targets).sum()
        tally["count"] += n

    def result(self, tally: dict) -> dict[str, float]:
        count = max(tally["count"].item(), 1)
        return {"loss": tally["loss_sum"].item() / count, "acc": tally["correct"].item() / count}
