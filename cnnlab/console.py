"""What a run shows while it trains in a terminal or a log: a line per epoch always, a live bar per epoch (steps,
time spent and left, the running loss) when stdout is a terminal, and a first decode of a dataset said once
with its own bar."""

from __future__ import annotations

import sys
from typing import Optional

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress as RichProgress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def epoch_line(row: dict, epochs: int) -> str:
    """One printed line per epoch: every split's metrics (as the vocabulary names them), then time and speed."""
    from cnnlab import metrics

    splits = [
        f"{name} "
        + " ".join(
            f"{metrics.SPLIT_METRICS[m].label} {row[k]:.{metrics.digits(k)}f}"
            for m in metrics.SPLIT_METRICS
            if (k := metrics.split_key(split, m)) in row
        )
        for split, name in metrics.SPLITS.items()
        if metrics.split_key(split, "loss") in row
    ]
    return (
        f"epoch {row['epoch']}/{epochs}  "
        + " | ".join(splits)
        + f" | {row['seconds']:.1f} s, {row['images_per_s']:,.0f} images/s"
    )


class DecodeBar:
    """A first decode (or extraction) of a dataset: what it is, said once, then a bar with the time left when
    stdout is a terminal (it stays on screen when it is done)."""

    def __init__(self):
        self.bar = None
        if sys.stdout.isatty():
            self.bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
            )
        self.task = None

    def __call__(self, done: int, total: int, what: str) -> None:
        if done == 0:  # a new phase begins: the whole line once, then a bar named by its first word
            print(what, flush=True)
            if self.bar is None:
                return
            self.bar.start()
            self.task = self.bar.add_task(what.split()[0], total=total)
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done)
            if done >= total:
                self.bar.stop()  # the finished bar stays on screen, the next phase gets a bar of its own
                self.bar.remove_task(self.task)
                self.task = None


class ConsoleProgress:
    """A live bar per epoch when stdout is a terminal (steps, time spent and left, the running loss); one
    printed line per epoch always; a first decode of the data says what it decodes, with its own bar."""

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.bar = None
        if sys.stdout.isatty():
            self.bar = RichProgress(
                TextColumn("epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[loss]}"),
                transient=True,
            )
        self.task = None

    def hooks(self):
        from cnnlab.engine.trainer import Progress

        return Progress(
            epoch_start=self.epoch_start,
            step=self.step,
            epoch_end=self.epoch_end,
            message=self.message,
            decode=DecodeBar(),
        )

    def epoch_start(self, epoch: int, batches: int) -> None:
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task("train", total=batches, epoch=f"{epoch}/{self.epochs}", loss="")

    def step(self, loss: Optional[float]) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)
            if loss is not None:
                self.bar.update(self.task, loss=f"train loss {loss:.4f}")

    def epoch_end(self, row: dict) -> None:
        if self.bar is not None:
            self.bar.remove_task(self.task)
            self.bar.stop()
        print(epoch_line(row, self.epochs), flush=True)

    def message(self, text: str) -> None:
        print(text, flush=True)
