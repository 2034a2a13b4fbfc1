"""What is learned and how it is scored: classification (one class per image) and per-pixel classification
(colourization, segmentation).

A task turns model outputs and targets into a loss, and tallies metrics on the device (no sync per
batch) into a dict keyed by the names of cnnlab.metrics: loss, acc (and iou, miou for segmentation).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from cnnlab.data.augment import IGNORE
from cnnlab.metrics import TASK_METRICS, TASK_MONITOR


class ClassificationTask:
    """Cross-entropy over classes; accuracy is the share of top-1 predictions that are right."""

    name = "classify"
    metrics = TASK_METRICS["classify"]  # what `result` returns
    monitor = TASK_MONITOR["classify"]  # the validation metric that picks best.pt unless train.monitor names another

    def __init__(self, num_classes: int, label_smoothing: float = 0.0):
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing

    @property
    def expected_initial_loss(self) -> float:
        """An untrained model predicts about uniformly: loss ln(K)."""
        return math.log(self.num_classes)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, smoothed: bool = True) -> torch.Tensor:
        """The training loss (label smoothing when set); `smoothed=False`: plain cross-entropy, which evaluation
        reports, so that validation and test losses compare across runs with and without smoothing."""
        smoothing = self.label_smoothing if smoothed else 0.0
        return F.cross_entropy(outputs.float(), targets, label_smoothing=smoothing)

    def new_tally(self, device) -> dict[str, torch.Tensor]:
        return {k: torch.zeros((), device=device, dtype=torch.float64) for k in ("loss_sum", "correct", "count")}

    def scored(self, targets: torch.Tensor) -> None:
        """Every image is scored, so processes sharing a batch score equal numbers: nothing to weigh."""
        return None

    def update(self, tally: dict, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        n = targets.shape[0]
        tally["loss_sum"] += loss.detach().double() * n
        tally["correct"] += (outputs.argmax(1) == targets).sum()
        tally["count"] += n

    def result(self, tally: dict) -> dict[str, float]:
        count = max(tally["count"].item(), 1)
        return {"loss": tally["loss_sum"].item() / count, "acc": tally["correct"].item() / count}


class PixelTask:
    """Per-pixel classification (colourization, segmentation): cross-entropy at every labelled pixel.

    `acc` is pixel accuracy. With `iou`, a confusion matrix is tallied too: `iou` is the IoU of the
    foreground (class 1 when there are two classes, else the mean over classes 1..K-1) and `miou`
    the mean IoU over all classes. Pixels marked IGNORE (crop padding) count nowhere. `dice` > 0 adds that
    weight times the soft Dice loss of the foreground classes to the training loss.
    """

    def __init__(self, name: str, num_classes: int, label_smoothing: float = 0.0, dice: float = 0.0):
        self.name = name
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.dice = dice
        self.metrics = TASK_METRICS[name]
        self.monitor = TASK_MONITOR[name]
        self.iou = "iou" in self.metrics

    @property
    def expected_initial_loss(self) -> float:
        return math.log(self.num_classes)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, smoothed: bool = True) -> torch.Tensor:
        """As ClassificationTask.loss, per labelled pixel; in training (`smoothed`) plus the weighted Dice loss."""
        smoothing = self.label_smoothing if smoothed else 0.0
        logits = outputs.float()
        loss = F.cross_entropy(logits, targets.long(), ignore_index=IGNORE, label_smoothing=smoothing)
        if smoothed and self.dice:
            loss = loss + self.dice * soft_dice_loss(logits, targets)
        return loss

    def scored(self, targets: torch.Tensor) -> torch.Tensor:
        """The labelled pixels `loss` averages over: processes sharing a batch may hold different numbers."""
        return (targets != IGNORE).sum()

    def new_tally(self, device) -> dict[str, torch.Tensor]:
        tally = {k: torch.zeros((), device=device, dtype=torch.float64) for k in ("loss_sum", "correct", "count")}
        if self.iou:
            tally["confusion"] = torch.zeros(self.num_classes * self.num_classes, device=device, dtype=torch.int64)
        return tally

    def update(self, tally: dict, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        targets = targets.long()
        valid = targets != IGNORE
        n = valid.sum()
        pred = outputs.argmax(1)
        tally["loss_sum"] += loss.detach().double() * n
        tally["correct"] += ((pred == targets) & valid).sum()
        tally["count"] += n
        if self.iou:
            k = self.num_classes
            tally["confusion"] += torch.bincount(targets[valid] * k + pred[valid], minlength=k * k)

    def class_iou(self, tally: dict) -> torch.Tensor:
        """IoU of each class (K,) from the tallied confusion matrix;
        NaN for a class in neither targets nor predictions."""
        cm = tally["confusion"].view(self.num_classes, self.num_classes).double()
        inter = cm.diag()
        union = cm.sum(0) + cm.sum(1) - inter
        return torch.where(union > 0, inter / union.clamp_min(1), torch.nan)

    def result(self, tally: dict) -> dict[str, float]:
        count = max(tally["count"].item(), 1)
        out = {"loss": tally["loss_sum"].item() / count, "acc": tally["correct"].item() / count}
        if self.iou:
            per_class = self.class_iou(tally)
            out["iou"] = per_class[1].item() if self.num_classes == 2 else per_class[1:].nanmean().item()
            out["miou"] = per_class.nanmean().item()
        return out


def soft_dice_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice of the foreground classes (1..K-1), averaged over them, over the batch's labelled pixels:
    with probabilities p and one-hot targets t, Dice = 2 sum(p t) / (sum(p) + sum(t)). It rewards overlap as IoU
    does, however small the foreground, where cross-entropy weighs every pixel alike."""
    labelled = (targets != IGNORE).unsqueeze(1)
    probs = outputs.softmax(1) * labelled
    one_hot = F.one_hot(targets.long().where(labelled.squeeze(1), 0), outputs.shape[1]).permute(0, 3, 1, 2) * labelled
    dims = (0, 2, 3)
    overlap = (probs * one_hot).sum(dims)[1:]
    sizes = (probs.sum(dims) + one_hot.sum(dims))[1:]
    return 1.0 - (2.0 * overlap / sizes.clamp_min(1e-6)).mean()


def make_task(cfg, num_classes: int):
    if cfg.task == "classify":
        return ClassificationTask(num_classes, cfg.train.label_smoothing)
    return PixelTask(cfg.task, num_classes, label_smoothing=cfg.train.label_smoothing, dice=cfg.train.dice)
