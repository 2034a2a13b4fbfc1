"""summary.json: what a run is, how far it got, its best epoch, where it ran and which cnnlab made it.

The trainer writes it at every epoch and the runner at the run's end; reports, comparisons, sweeps and
`cnnlab resume` read it. Keys of the form `<metric>_at_best` (test_acc_at_best, test_confusion_at_best) are the
best checkpoint's measurements; they are kept together in `at_best` and written flat, as runs always had them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import pydantic

from cnnlab.atomic import write_json
from cnnlab.records.base import Provenance, RecordError, read_json, validated

STATUSES = ("running", "completed", "failed", "stopped", "pruned")
AT_BEST = "_at_best"
Number = Union[int, float]
EpochRow = dict[str, Number]  # one line of metrics.jsonl: epoch, <split>_<metric>, lr, timings


@dataclass
class RunSummary:
    name: str
    status: str
    epochs_done: int = 0
    epochs: int = 0
    error: Optional[str] = None
    failure: Optional[str] = None  # failed: 'diverged' or 'error'
    stopped_by: Optional[str] = None  # stopped: the signal
    resume: Optional[str] = None  # stopped: the command that continues the run
    pruned_at_epoch: Optional[int] = None
    stopped_early: Optional[dict[str, Any]] = None  # train.early_stop: stopped_at, best, best_epoch, monitor, ending
    initial_loss: Optional[float] = None
    expected_initial_loss: Optional[float] = None
    initial_loss_ok: Optional[bool] = None
    initial_loss_deviation: Optional[float] = None  # (initial - expected) / expected
    initial_loss_verdict: Optional[str] = None  # as expected, lower than expected, higher than expected
    monitor: Optional[str] = None  # the validation metric best.pt follows (absent in the oldest run folders)
    best_epoch: Optional[int] = None
    best_value: Optional[float] = None
    best_val_acc: Optional[float] = None
    at_best: dict[str, Any] = field(default_factory=dict)  # test_acc, test_confusion, ... of best.pt
    final: Optional[EpochRow] = None  # the last epoch's metrics.jsonl row
    params: Optional[int] = None
    macs_per_image: Optional[int] = None
    train_macs_per_image: Optional[int] = None
    trainable_params: Optional[int] = None  # in the last epoch trained (train.unfreeze_after changes it)
    frozen_params: Optional[int] = None
    transfer: Optional[dict[str, Any]] = None  # torchvision models: heads, trainable, pretrained
    device: Optional[str] = None
    threads: Optional[int] = None
    peak: Optional[dict[str, Any]] = None  # the machine's measured matmul peak the share of peak is of
    world_size: int = 1
    spread: Optional[dict[str, Any]] = None  # under torchrun: backend, machines, per-rank devices
    seed: Optional[int] = None
    wall_seconds: Optional[float] = None
    train_seconds: Optional[float] = None
    startup_seconds: Optional[float] = None
    time_to: dict[str, Optional[float]] = field(default_factory=dict)  # target test accuracy: training seconds
    task: str = "classify"
    classes: list[str] = field(default_factory=list)
    input_shape: list[int] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # source, split sizes, normalisation
    figures: list[dict[str, Any]] = field(default_factory=list)  # pictures of the best checkpoint
    look_inside: Optional[dict[str, Any]] = None
    sparsity: Optional[dict[str, Any]] = None
    torch: Optional[str] = None
    provenance: Provenance = field(default_factory=Provenance)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as they were

    def at(self, metric: str) -> Any:
        """A measurement of the best checkpoint ('test_acc'), None where it was not recorded."""
        return self.at_best.get(metric)

    def updated(self, **changes: Any) -> "RunSummary":
        """A copy with `changes` applied; `<metric>_at_best` keys go to at_best, as when read."""
        return RunSummary.from_dict({**self.to_dict(), **changes}, Path("(summary in memory)"))

    def to_dict(self) -> dict:
        """The summary.json layout: fields flat, at_best as `<metric>_at_best`, provenance as its three keys."""
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("at_best", "provenance", "extra")
        }
        out.update({k + AT_BEST: v for k, v in self.at_best.items()})
        out.update(dataclasses.asdict(self.provenance))
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> "RunSummary":
        if not isinstance(data, dict):
            raise RecordError(path, f"not a JSON object (found {type(data).__name__})")
        known = {f.name for f in dataclasses.fields(cls)} - {"at_best", "provenance", "extra"}
        prov = {f.name for f in dataclasses.fields(Provenance)}
        shaped = {k: v for k, v in data.items() if k in known}
        shaped["at_best"] = {k[: -len(AT_BEST)]: v for k, v in data.items() if k.endswith(AT_BEST)}
        shaped["provenance"] = {k: v for k, v in data.items() if k in prov}
        shaped["extra"] = {
            k: v for k, v in data.items() if k not in known and k not in prov and not k.endswith(AT_BEST)
        }
        summary = validated(cls, shaped, path)
        if summary.status not in STATUSES:
            raise RecordError(path, f"status: {summary.status!r:.40} is not one of {', '.join(STATUSES)}")
        return summary

    @classmethod
    def read(cls, path: Path) -> "RunSummary":
        return cls.from_dict(read_json(path), path)

    def write(self, path: Path) -> None:
        write_json(path, self.to_dict())


_ROWS = pydantic.TypeAdapter(EpochRow)


def check_epoch_rows(rows: list, path: Path) -> list[EpochRow]:
    """metrics.jsonl's rows, each a JSON object of numbers with an integer epoch; RecordError naming the line."""
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise RecordError(path, f"line {number} is not a JSON object")
        try:
            _ROWS.validate_python(row, strict=True)
        except pydantic.ValidationError:
            wrong = next((k for k, v in row.items() if not isinstance(v, (int, float)) or isinstance(v, bool)), "?")
            raise RecordError(path, f"line {number}: {wrong} is not a number") from None
        if not isinstance(row.get("epoch"), int) or isinstance(row.get("epoch"), bool):
            raise RecordError(path, f"line {number}: epoch is missing or not a whole number")
    return rows
