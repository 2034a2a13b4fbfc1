"""The metrics vocabulary: every key a metrics.jsonl row holds, with its label, unit and which way is better.

A row holds `<split>_<metric>` for each split and each metric the task measures (`val_acc`, `test_iou`)
and once-per-epoch keys (`lr`, the timings). Curves, reports, the command line, comparisons, sweeps and
the checkpoint policy read names and directions from here, so a new metric is one entry below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str = ""
    higher_is_better: Optional[bool] = None  # None: neither (the learning rate)
    digits: int = 4  # decimals shown in tables and on the command line
    timing: bool = False  # measures the machine, not the training: differs between identical runs

    @property
    def mode(self) -> str:
        """'max' or 'min': the direction a checkpoint policy or a search optimises."""
        return "max" if self.higher_is_better else "min"

    @property
    def title(self) -> str:
        """The label as a heading starts: 'Mean IoU', 'Loss'."""
        return self.label[:1].upper() + self.label[1:]

    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


SPLITS = {"train": "training", "val": "validation", "test": "test"}

# measured on every split each epoch; a task records the ones it knows (loss and acc always)
SPLIT_METRICS = {
    m.key: m
    for m in (
        Metric("loss", "loss", "cross-entropy, nats", higher_is_better=False),
        Metric("acc", "accuracy", higher_is_better=True),
        Metric("iou", "IoU", higher_is_better=True),  # foreground intersection over union (segmentation)
        Metric("miou", "mean IoU", higher_is_better=True),  # over all classes, background included
    )
}

# recorded once per epoch
EPOCH_METRICS = {
    m.key: m
    for m in (
        Metric("lr", "learning rate", digits=5),
        Metric("seconds", "epoch time", "s", higher_is_better=False, digits=1, timing=True),
        Metric("train_seconds", "training time", "s", higher_is_better=False, digits=1, timing=True),
        Metric("seconds_per_step", "time per step", "s", higher_is_better=False, digits=4, timing=True),
        Metric("images_per_s", "training speed", "images/s", higher_is_better=True, digits=0, timing=True),
        # 2 FLOPs per multiply-accumulate of a training step: 3 forward passes when every layer trains, fewer when
        # a front is frozen (cnnlab.analysis.layer_table.training_macs)
        Metric("train_gflop_per_s", "training throughput", "GFLOP/s", higher_is_better=True, digits=2, timing=True),
        # train_gflop_per_s over the machine's measured matmul peak at the run's precision (summary.json's peak)
        Metric("peak_percent", "share of peak", "%", higher_is_better=True, digits=1, timing=True),
        Metric("peak_mem_mb", "peak memory", "MB", higher_is_better=False, digits=0, timing=True),
    )
}

TIMING_KEYS = tuple(k for k, m in EPOCH_METRICS.items() if m.timing)

# the split metrics each task records, and the one a run keeps best.pt by (and a search optimises) by default
TASK_METRICS = {"classify": ("loss", "acc"), "colourize": ("loss", "acc"), "segment": ("loss", "acc", "iou", "miou")}
TASK_MONITOR = {"classify": "acc", "colourize": "acc", "segment": "iou"}


def split_key(split: str, metric: str) -> str:
    return f"{split}_{metric}"


def monitored(task: str, monitor: Optional[str] = None) -> str:
    """The validation metric that picks best.pt: train.monitor, else the task's own (val_acc; val_iou for segment)."""
    return monitor or split_key("val", TASK_MONITOR[task])


def best_words(key: str) -> str:
    """'best validation IoU' or 'lowest validation loss': a kept best value of `key`, in words."""
    return f"{'lowest' if mode(key) == 'min' else 'best'} {label(key)}"


def monitor_problem(task: str, key: str) -> Optional[str]:
    """Why validation metric `key` cannot pick a best epoch of a `task` run (the task does not record it), or None."""
    if key in (choices := [split_key("val", m) for m in TASK_METRICS[task]]):
        return None
    return f"task {task} does not record {key}; choose one of {', '.join(choices)}"


def lookup(key: str) -> tuple[Optional[str], Optional[Metric]]:
    """'val_acc' -> ('val', accuracy); 'lr' -> (None, learning rate); an unknown key -> (None, None)."""
    if key in EPOCH_METRICS:
        return None, EPOCH_METRICS[key]
    split, _, name = key.partition("_")
    if split in SPLITS and name in SPLIT_METRICS:
        return split, SPLIT_METRICS[name]
    return None, None


def label(key: str, unit: bool = False) -> str:
    """'val_acc' -> 'validation accuracy'; a key outside the vocabulary is shown as it is."""
    split, metric = lookup(key)
    if metric is None:
        return key
    text = metric.axis_label() if unit else metric.label
    return f"{SPLITS[split]} {text}" if split else text


def mode(key: str) -> str:
    """'max' or 'min' for a key whose better direction is known (KeyError for any other key)."""
    _, metric = lookup(key)
    if metric is None or metric.higher_is_better is None:
        raise KeyError(f"{key} has no better direction")
    return metric.mode


def split_keys(row: dict) -> list[str]:
    """The split metrics a row holds, in a fixed order: training, validation, test x loss, acc, iou, miou."""
    return [k for s in SPLITS for m in SPLIT_METRICS if (k := split_key(s, m)) in row]


def all_keys(history: list[dict]) -> dict:
    """Every key that some row of `history` holds, as one row (values None), in the order first met: epochs without
    evaluation (train.eval_every) have rows without validation and test keys."""
    return {key: None for row in history for key in row}


def families(row: dict) -> list[str]:
    """The metric names (loss, acc, iou, ...) a row records on at least one split."""
    return [m for m in SPLIT_METRICS if any(split_key(s, m) in row for s in SPLITS)]


def epoch_keys(row: dict) -> list[str]:
    """The once-per-epoch keys a row holds, in vocabulary order."""
    return [k for k in EPOCH_METRICS if k in row]


def digits(key: str) -> int:
    _, metric = lookup(key)
    return 4 if metric is None else metric.digits
