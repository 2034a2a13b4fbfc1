"""Start or resume one run and finish it: `cnnlab run`, `cnnlab resume` and sweep workers call these.

Only the process holding a run folder's lock trains it (RunFolder.lock). The end of a run is decided and
recorded here and nowhere else, in summary.json:
- completed (with the figures and records of its best checkpoint): the report is written first, then
  summary.json says completed, so a run recorded as completed has its report (a kill in between leaves a run
  that `cnnlab resume` finishes);
- failed: the loss diverged (the trainer's message), or any other error (its one-line text in summary.json,
  its traceback in error.log);
- pruned: a sweep's pruner stopped it;
- stopped: SIGTERM or SIGINT (Ctrl-C) asked it to stop. The trainer stops after the training step under way
  (or before the next epoch, when the signal came while an epoch was being evaluated or saved); the unfinished
  epoch is dropped and last.pt keeps the last finished one. summary.json records the signal and the command
  that resumes; a second signal interrupts at once, recorded the same way.
Each but stopped ends with the run's report.

Under torchrun every process calls these with its Spread (cnnlab.engine.distributed); rank 0 alone holds the lock,
reads and writes the run folder and records the ending, the others train and stop with it. A process of the run
that dies makes the others fail at their next collective (the run is recorded as failed by rank 0, if it is the
one still alive; torchrun then stops the rest with SIGTERM); `torchrun ... -m cnnlab resume` continues it.
"""

from __future__ import annotations

import json
import shlex
import signal
import threading
import traceback
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from cnnlab.atomic import write_json, write_text
from cnnlab.engine.run_setup import BuiltRun, build_run
from cnnlab.engine.distributed import ONE_PROCESS, Spread
from cnnlab.engine.flags import torch_flags
from cnnlab.engine.startup import clock_origin
from cnnlab.engine.trainer import Diverged, Progress, Pruned, StopRequested, Trainer
from cnnlab.errors import CnnlabError, Stopped
from cnnlab.records import RunSummary
from cnnlab.runfolder import DamagedRecord, RunFolder

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def resume_command(run: RunFolder, data_root: Path, spread: Spread = ONE_PROCESS) -> str:
    command = f"cnnlab resume {shlex.quote(str(run.path.resolve()))} --data-dir {shlex.quote(str(data_root))}"
    return f"torchrun [as before] -m {command}" if spread.launched else command


def one_line(error: BaseException) -> str:
    """A CnnlabError's message; for any other error its type and the first line of its text."""
    if isinstance(error, CnnlabError):
        return str(error)
    text = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextmanager
def stop_on_signals(request_stop: Callable[[str], None]) -> Iterator[None]:
    """While training: SIGTERM and SIGINT ask for a stop at the next safe point; a second one interrupts at once.
    (Signal handlers belong to the main thread; elsewhere the default behaviour stays, and so does a signal the
    process was started ignoring, as a shell's background job ignores SIGINT.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    asked: list[int] = []

    def handler(signum, frame):
        if asked:
            raise KeyboardInterrupt
        asked.append(signum)
        request_stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _end(run: RunFolder, summary: RunSummary) -> None:
    """The report first, then summary.json: a run recorded as ended has its report."""
    from cnnlab.report.run_report import write_run_report  # reports import matplotlib: after training, not before

    write_run_report(run.path, summary)
    run.write_summary(summary)


def _fit(trainer: Trainer, built: BuiltRun, run: RunFolder) -> RunSummary:
    """Train; the summary of a completed or pruned run (its prediction figures drawn, by rank 0 of a spread run)."""
    try:
        trainer.fit()
    except Pruned:
        return trainer.summary("pruned").updated(pruned_at_epoch=trainer.state.epoch)
    from cnnlab.report.inside import best_checkpoint_record  # as in _end: not in a run's startup

    return trainer.summary("completed").updated(**(best_checkpoint_record(built, run) if built.spread.main else {}))


def _stopped(trainer: Trainer, run: RunFolder, data_root: Path) -> Stopped:
    by = trainer.stop_reason or "SIGINT"  # a KeyboardInterrupt without our handler is Ctrl-C too
    spread = trainer.built.spread
    command = resume_command(run, data_root, spread)
    if spread.main:
        run.write_summary(trainer.summary("stopped").updated(stopped_by=by, resume=command))
    done, epochs = trainer.state.epoch, trainer.built.cfg.train.epochs
    return Stopped(
        f"stopped by {by} after epoch {done} of {epochs} (an unfinished epoch is dropped); resume with: {command}",
        128 + signal.Signals[by].value,
    )


def _failed(trainer: Trainer, run: RunFolder, error: Exception, data_root: Path) -> CnnlabError:
    """Record the run as failed (the report too, where it can still be written; by rank 0 of a spread run); the
    error for the user."""
    diverged = isinstance(error, Diverged)
    spread = trainer.built.spread
    summary = trainer.summary("failed", one_line(error)).updated(failure="diverged" if diverged else "error")
    if spread.main:
        if not isinstance(error, CnnlabError):
            write_text(run.error_log, "".join(traceback.format_exception(error)))
        run.write_summary(summary)  # the ending first: drawing the report (a full disk) cannot lose it
        try:
            from cnnlab.report.run_report import write_run_report  # as in _end

            write_run_report(run.path, summary)
        except Exception:  # e.g. the disk is still full: the ending stays recorded, without its report
            pass
    if diverged:
        return error
    where = "" if isinstance(error, CnnlabError) else f" (the traceback is in {run.error_log}; --debug shows it)"
    return CnnlabError(
        f"{one_line(error)}{where}. The run is recorded as failed after epoch {trainer.state.epoch}; "
        f"when the cause is fixed, resume with: {resume_command(run, data_root, spread)}"
    )


LAST_RESORT = '{"name": "", "status": "failed", "failure": "error", "error": "recording the failure failed"}\n'


def _last_resort(run: RunFolder, name: str, epochs_done: int) -> None:
    """Mark the run failed when recording its failure the usual way failed (out of memory, a file the summary
    reads): the smallest record, through nothing that can fail as that did, so it never stays 'running'."""
    try:
        write_json(run.summary_path, {**json.loads(LAST_RESORT), "name": name, "epochs_done": int(epochs_done)})
    except Exception:
        write_text(run.summary_path, LAST_RESORT)  # no memory even for that: the record built at import


def _train_and_finish(built: BuiltRun, run: RunFolder, progress: Progress, data_root: Path) -> RunFolder:
    trainer = Trainer(built, progress)
    trainer.attach(run)  # a last.pt that cannot continue this run is refused, and the run left as it was
    with stop_on_signals(trainer.request_stop), closing(trainer.logs):
        try:
            ending = _fit(trainer, built, run)
            if built.spread.main:
                _end(run, ending)
                trainer.logs.figures(run.figures)  # train.log: the report's figures
        except (StopRequested, KeyboardInterrupt):
            raise _stopped(trainer, run, data_root) from None
        except Exception as e:
            try:
                failure = _failed(trainer, run, e, data_root)
            except Exception as recording:
                if built.spread.main:
                    _last_resort(run, built.cfg.name, trainer.state.epoch)
                raise CnnlabError(
                    f"{one_line(e)}; and recording the failure in {run.path} failed too: "
                    f"{one_line(recording)}; it is marked failed"
                ) from e
            if failure is e:
                raise
            raise failure from e
    return run


def _build(cfg, data_root: Path, spread: Spread, progress: Progress, **options) -> BuiltRun:
    """Every process builds the run (build_run's `options`); if one cannot (a batch it cannot share, data missing on
    its machine), all stop."""
    return spread.everywhere(lambda: build_run(cfg, data_root, progress.decode, spread=spread, **options))


def _locked(held: ExitStack, run: RunFolder) -> RunFolder:
    """`run`, its lock held until `held` closes (by rank 0 alone in a spread run: the folder is on its disk)."""
    held.enter_context(run.lock())
    return run


def start_run(
    cfg,
    runs_dir: Path,
    data_root: Path,
    progress: Progress = Progress(),
    run_dir: Optional[Path] = None,
    download: bool = False,
    spread: Spread = ONE_PROCESS,
) -> RunFolder:
    """Train a new run into `runs_dir/<name>/<date-time>-s<seed>`, or into `run_dir` when one is given;
    `download` lets torchvision's pretrained weights be fetched."""
    started_at = clock_origin()
    with torch_flags(cfg.deterministic), ExitStack() as held:
        built = _build(
            cfg, data_root, spread, progress, download=download, started_at=started_at
        )  # before the folder: a bad config, missing data or weights make none
        run = spread.from_main(
            lambda: _locked(
                held, RunFolder.create(runs_dir, cfg) if run_dir is None else RunFolder.create_at(run_dir, cfg)
            )
        )
        progress.message(f"run folder: {run.path}")
        return _train_and_finish(built, run, progress, data_root)


def _left_to_do(run: RunFolder) -> tuple[bool, str]:
    """(whether the run must be trained or finished, what to tell the user first). A completed run whose
    summary.json or metrics.jsonl is damaged, or that has no report, is finished again from last.pt."""
    try:
        summary = run.summary()
        run.metrics()
    except DamagedRecord as e:
        return True, f"notice: {e.path} is damaged ({e.what}); writing it again from checkpoints/last.pt"
    if summary is None or summary.status != "completed":
        return True, ""
    if not (run.path / "report.html").exists():
        return True, f"{run.path} completed without its report; writing it"
    return False, f"{run.path} has already completed; nothing to resume"


def resume_run(
    run_dir: Path, data_root: Path, progress: Progress = Progress(), spread: Spread = ONE_PROCESS
) -> RunFolder:
    """Continue a run from its last.pt, as if it had never stopped; a completed run is left as it is unless its
    records are damaged or its report is missing. Under torchrun the folder need only be on rank 0's disk: the
    others receive its config and last.pt."""

    def open_locked(held: ExitStack):
        run = _locked(held, RunFolder.open(run_dir))
        todo, note = _left_to_do(run)
        cfg = run.config() if todo else None
        if todo:
            run.check_model_source(cfg)
        return run, todo, note, cfg, run.last_path.exists()

    started_at = clock_origin()
    with ExitStack() as held:
        run, todo, note, cfg, has_last = spread.from_main(lambda: open_locked(held))
        if note:
            progress.message(note)
        if not todo:
            return run
        with torch_flags(cfg.deterministic):  # pretrained weights only when no last.pt replaces them
            return _train_and_finish(
                _build(cfg, data_root, spread, progress, pretrained=not has_last, started_at=started_at),
                run,
                progress,
                data_root,
            )


def run_invariance(cfg, runs_dir: Path, data_root: Path, progress: Progress = Progress()) -> Path:
    """Train `cfg` as given (with its y = a*x + b) and again plain (a=1, b=0); report how far it moved."""
    import time

    from cnnlab.report.invariance import compare
    from cnnlab.report.invariance_report import write_invariance_report

    if cfg.data.affine_a == 1.0 and cfg.data.affine_b == 0.0:
        raise CnnlabError("the experiment has no input transform: set data.affine_a and/or data.affine_b (y = a*x + b)")
    plain_cfg = cfg.model_copy(
        update={"name": f"{cfg.name}-plain", "data": cfg.data.model_copy(update={"affine_a": 1.0, "affine_b": 0.0})}
    )
    plain = start_run(plain_cfg, runs_dir, data_root, progress)
    moved = start_run(cfg.model_copy(update={"name": f"{cfg.name}-affine"}), runs_dir, data_root, progress)
    folder = Path(runs_dir) / cfg.name / time.strftime("invariance-%Y%m%d-%H%M%S")
    return write_invariance_report(folder, compare(plain, moved, data_root), plain, moved).parent
