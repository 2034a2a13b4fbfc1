"""Which classes a classifier mixes up: the confusion matrix, per-class accuracy, and the wrong predictions
it was most sure of. Rows are true classes, columns predicted classes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.engine.restore import predict
from cnnlab.errors import CnnlabError
from cnnlab.explain.hooks import evaluating


@dataclass
class Confusion:
    counts: torch.Tensor  # (K, K) int64: counts[t, p] = examples of class t predicted as p
    classes: list[str]

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def accuracy(self) -> float:
        return int(self.counts.trace()) / max(self.total, 1)

    def row_normalised(self) -> torch.Tensor:
        """Each row divided by its class's number of examples (a class with none: a row of zeros)."""
        rows = self.counts.sum(1, keepdim=True).clamp_min(1)
        return self.counts.double() / rows

    def per_class_accuracy(self) -> dict[str, float | None]:
        """{class: share of its examples predicted right}; None for a class with no examples."""
        rows = self.counts.sum(1)
        return {
            name: (int(self.counts[i, i]) / int(rows[i]) if rows[i] else None) for i, name in enumerate(self.classes)
        }

    def as_dict(self) -> dict:
        return {
            "classes": self.classes,
            "counts": self.counts.tolist(),
            "total": self.total,
            "accuracy": self.accuracy,
            "per_class_accuracy": self.per_class_accuracy(),
        }


def confusion(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> Confusion:
    """The confusion matrix of top-1 predictions `logits` (N, K) against `labels` (N,)."""
    k = len(classes)
    if logits.dim() != 2 or logits.shape[1] != k or labels.shape != logits.shape[:1]:
        raise CnnlabError(
            f"a confusion matrix needs outputs (N, {k}) and class labels (N,); got "
            f"{list(logits.shape)} and {list(labels.shape)} (per-pixel tasks have no confusion matrix here)"
        )
    pred = logits.argmax(1).cpu()
    counts = torch.bincount(labels.long().cpu() * k + pred, minlength=k * k).view(k, k)
    return Confusion(counts, list(classes))


def most_confused(logits: torch.Tensor, labels: torch.Tensor, classes: list[str], n: int) -> list[dict]:
    """The `n` wrong predictions with the highest probability on the predicted class, most confident first."""
    probs = logits.float().softmax(1).cpu()
    labels = labels.long().cpu()
    confidence, pred = probs.max(1)
    wrong = torch.nonzero(pred != labels).flatten()
    order = wrong[confidence[wrong].argsort(descending=True, stable=True)][:n]
    return [
        {
            "index": int(i),
            "true": classes[labels[i]],
            "predicted": classes[pred[i]],
            "probability": float(confidence[i]),
            "true_probability": float(probs[i, labels[i]]),
        }
        for i in order
    ]


def split_outputs(model: nn.Module, batches, bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs, labels) of every example of a split (cnnlab DeviceBatches), in the split's order, in eval mode."""
    if batches.shuffle or batches.crop_padding or batches.flip:
        raise CnnlabError(
            "explain reads a split in its own order without augmentation; "
            "pass the test (or validation) batches, not the training batches"
        )
    with evaluating(model):
        outputs = predict(model, batches, autocast_bf16=bf16)
    return outputs, batches.labels.cpu()
