"""train.early_stop: end a run whose monitored validation metric stopped improving (Lightning's EarlyStopping).

Only evaluated epochs count (train.eval_every). Its record (best value, evaluations without improvement, the epoch
it stopped at) is part of the run's state in last.pt, so a resumed run counts on from where it was and an
early-stopped run that is resumed ends the same. The run then completes as usual: best.pt is the checkpoint
policy's, summary.json says `stopped_early`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from cnnlab import metrics


@dataclass(frozen=True)
class EarlyStop:
    monitor: str
    mode: str  # max or min (cnnlab.metrics.mode)
    patience: int
    min_delta: float

    @classmethod
    def of(cls, cfg, default_monitor: str) -> Optional["EarlyStop"]:
        stop = cfg.train.early_stop
        if stop is None:
            return None
        monitor = stop.monitor or default_monitor
        return cls(monitor, metrics.mode(monitor), stop.patience, stop.min_delta)

    def improved(self, value: float, best: Optional[float]) -> bool:
        if best is None:
            return math.isfinite(value)
        return value > best + self.min_delta if self.mode == "max" else value < best - self.min_delta

    def after(self, record: Optional[dict], row: dict) -> Optional[dict]:
        """The record after the epoch of `row` ({best, best_epoch, stale, stopped_at}); unchanged when the row was
        not evaluated."""
        if self.monitor not in row:
            return record
        record = dict(record or {"best": None, "best_epoch": None, "stale": 0, "stopped_at": None})
        if self.improved(row[self.monitor], record["best"]):
            record.update(best=row[self.monitor], best_epoch=row["epoch"], stale=0)
        else:
            record["stale"] += 1
        if record["stale"] >= self.patience:
            record["stopped_at"] = row["epoch"]
        return record

    def words(self, record: dict) -> str:
        return (
            f"stopped early at epoch {record['stopped_at']}: {self.monitor} has not improved by more than "
            f"{self.min_delta:g} for {self.patience} evaluation(s) since epoch {record['best_epoch']}"
        )
