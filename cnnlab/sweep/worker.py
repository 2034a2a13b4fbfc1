"""One sweep worker: claim a cell, run it (or resume its half-finished run folder), record the outcome,
and repeat until every cell of the sweep is done. The process (`python -m cnnlab.sweep_process`) gives it
the runner's start and resume (a CellRunner): sweep/ sits below the runner, which trains and finishes a run.

A cell whose worker died is resumed, not rerun: its run folder keeps `last.pt` (written atomically after
every epoch) and the trainer continues it as if it had never stopped, so no finished epoch is trained twice
and the result equals an uninterrupted run's. A folder without its config.yaml (the worker died while
creating it) holds nothing and is made anew. A finished run folder is never trained again.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from cnnlab import metrics
from cnnlab.errors import CnnlabError
from cnnlab.records import RunSummary
from cnnlab.sweep.claims import CELL, Board, Heartbeat
from cnnlab.sweep.collect import brief
from cnnlab.sweep.grid import Cell, SweepDef
from cnnlab.sweep.storage import open_storage

STORAGE_ENV = "CNNLAB_SWEEP_STORAGE"
EVENTS = "events.jsonl"
POLL_S = 2.0  # an idle worker looks for waiting (or stale) cells this often while others finish theirs
FINISHED = {"completed": "completed", "failed": "run-failed", "pruned": "pruned"}  # run status -> outcome


@dataclass
class CellRunner:
    """How a cell's run is trained and finished (its end recorded, its report written)."""

    start: Callable  # (cfg, run_dir, progress): a new run in run_dir
    resume: Callable  # (run_dir, progress): continue the run in run_dir from its last.pt


class LostClaim(Exception):
    """Our cell was failed as stale by another worker (our heartbeat stopped for too long)."""


def board_for(definition: SweepDef, storage, stale_after: float) -> Board:
    """The sweep's board; the study must hold the identity in the folder's sweep.json (where it has one)."""
    from cnnlab.sweep.search import direction

    way = direction(definition.base["search"]) if definition.mode == "optuna" else "maximize"
    try:
        return Board(
            storage,
            definition.name,
            [c.key for c in definition.cells],
            definition.hash,
            way,
            stale_after,
            sweep_id=definition.identity or None,
        )
    except CnnlabError as e:
        if not definition.storage:
            raise
        raise CnnlabError(f"{e} (its sweep.json says it was set up with {definition.storage})") from None


def finished_outcome(summary: Optional[RunSummary]) -> Optional[str]:
    """The outcome of a run folder finished for good, or None: running, stopped, or failed by an error that is
    not the run's own result (a full disk, a crash) and may not come back, so the run is resumed."""
    status = summary.status if summary else None
    if status == "failed" and (summary.failure or "diverged") != "diverged":
        return None
    return FINISHED.get(status)


def params_of(cell: str, trials: list) -> dict:
    """A re-enqueued Optuna trial keeps the values its earlier attempt drew (its run folder has them)."""
    tried = [t for t in trials if t.params]
    return dict(tried[-1].params) if tried else {}


def append_event(folder: Path, **event) -> None:
    """One JSON line per event in events.jsonl (a single O_APPEND write: lines of workers never interleave)."""
    line = json.dumps({"time": round(time.time(), 3), "host": socket.gethostname(), "pid": os.getpid(), **event}) + "\n"
    fd = os.open(folder / EVENTS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)  # the umask applies
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class Worker:
    def __init__(self, folder: Path, storage_url: str, index: int, cells: CellRunner, stale_after: float):
        self.folder, self.index, self.cells = Path(folder), index, cells
        self.definition = SweepDef.read(self.folder)
        storage = open_storage(storage_url)
        self.board = board_for(self.definition, storage, stale_after)
        self.study = None
        if self.definition.mode == "optuna":
            import optuna

            from cnnlab.sweep import search

            s = self.definition.base["search"]
            self.study = optuna.load_study(
                study_name=self.definition.name,
                storage=storage,
                sampler=search.sampler(s, self.definition.base["seed"] + index),
                pruner=search.pruner(s, self.definition.base["train"]["epochs"]),
            )

    def say(self, text: str) -> None:
        print(f"[worker {self.index}] {text}", flush=True)

    def loop(self) -> int:
        """Run cells until the sweep is done; the number this worker ran."""
        ran = 0
        while True:
            trial = self.board.claim()
            if trial is not None:
                self.run_cell(trial)
                ran += 1
                continue
            status = self.board.sync(params_of)
            if status.all_done:
                return ran
            if not status.waiting:
                time.sleep(POLL_S)  # the rest are running elsewhere; wait, and take over any whose worker dies

    def run_cell(self, trial) -> None:
        from cnnlab.runfolder import RunFolder

        cell = self.definition.cell(trial.user_attrs[CELL])
        run_dir = self.folder / cell.run
        otrial, params = None, None
        if self.study is not None:
            import optuna

            from cnnlab.sweep.search import suggest

            otrial = optuna.Trial(self.study, trial._trial_id)
            params = suggest(otrial, self.definition.base["search"])
        cfg = self.definition.config_for(cell, params)
        label = (
            cell.label if params is None else f"{cell.key} " + " ".join(f"{k}={brief(v)}" for k, v in params.items())
        )
        started = time.perf_counter()
        with Heartbeat(self.board, trial._trial_id) as beat:
            try:
                outcome = self.train(cell, label, cfg, run_dir, otrial, beat)
            except LostClaim:
                self.say(f"gave up {label}: another worker took it over (this one missed its heartbeats)")
                append_event(self.folder, cell=cell.key, event="lost", worker=self.index)
                return
            except KeyboardInterrupt:
                self.board.finish(trial._trial_id, "interrupted")
                append_event(self.folder, cell=cell.key, event="interrupted", worker=self.index)
                raise
            except BaseException as e:
                outcome = finished_outcome(RunFolder(run_dir).summary()) or "error"
                self.board.finish(trial._trial_id, outcome)
                append_event(self.folder, cell=cell.key, event=outcome, worker=self.index, error=str(e))
                if outcome == "error":
                    raise
                self.say(f"failed {label}: {e}")
                return
        value = self.objective(RunFolder(run_dir))
        self.board.finish(trial._trial_id, outcome, value)
        seconds = time.perf_counter() - started
        append_event(
            self.folder, cell=cell.key, event=outcome, worker=self.index, seconds=round(seconds, 3), value=value
        )
        shown = "-" if value is None else f"{value:.4f}"
        self.say(f"{outcome} {label}: {metrics.best_words(self.watched(cfg))} {shown} ({seconds:.1f} s)")

    def watched(self, cfg) -> str:
        """What a cell's lines show: a search's metric, else the metric that picks the run's best.pt (val_iou for
        segmentation)."""
        if self.study is not None:
            return self.definition.base["search"]["metric"]
        return metrics.monitored(cfg.task, cfg.train.monitor)

    def objective(self, run) -> Optional[float]:
        if self.study is None:
            return run.summary().best_value  # of the run's monitor, at its best checkpoint
        from cnnlab.sweep.search import objective

        return objective(run.metrics(), self.definition.base["search"])

    def train(self, cell: Cell, label: str, cfg, run_dir: Path, otrial, beat: Heartbeat) -> str:
        """Start, resume or find the cell's run folder; the outcome ('completed', 'run-failed', 'pruned')."""
        from cnnlab.engine.trainer import Progress, Pruned
        from cnnlab.runfolder import RunFolder

        metric = self.watched(cfg)
        epochs = cfg.train.epochs

        def epoch_end(row: dict) -> None:
            value = f"{metrics.label(metric)} {row[metric]:.4f}" if metric in row else "not evaluated"
            self.say(f"{label}: epoch {row['epoch']}/{epochs} {value} ({row['seconds']:.1f} s)")
            if beat.lost:
                raise LostClaim()
            if otrial is not None and metric in row:
                otrial.report(row[metric], row["epoch"])
                if otrial.should_prune():
                    raise Pruned()  # the runner records the run as pruned

        def decode(done: int, total: int, what: str) -> None:
            if done == 0:  # the first run on a dataset decodes it: say so instead of a silent minute
                self.say(f"{label}: {what}")

        progress = Progress(epoch_end=epoch_end, decode=decode)
        if (run_dir / "config.yaml").is_file():
            run = RunFolder.open(run_dir)
            if run.config().model_dump(mode="json") != cfg.model_dump(mode="json"):
                raise CnnlabError(
                    f"{run_dir} holds a run of another config than this sweep's cell {cell.key}; "
                    f"move it away and run the sweep again"
                )
            summary = run.summary()
            if finished_outcome(summary):
                append_event(self.folder, cell=cell.key, event="found", worker=self.index, status=summary.status)
                return finished_outcome(summary)
            for row in [r for r in run.metrics() if metric in r] if otrial is not None else []:
                otrial.report(row[metric], row["epoch"])  # what the pruner saw before the interruption
            self.say(f"resume {label} from epoch {len(run.metrics()) + 1} in {run_dir}")
            append_event(self.folder, cell=cell.key, event="resume", worker=self.index, epochs_done=len(run.metrics()))
            self.cells.resume(run_dir, progress)
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)  # made by a worker that died before writing its config: nothing in it
            self.say(f"start {label} in {run_dir}")
            append_event(self.folder, cell=cell.key, event="start", worker=self.index)
            self.cells.start(cfg, run_dir, progress)
        return FINISHED[RunFolder(run_dir).summary().status]  # completed or pruned
