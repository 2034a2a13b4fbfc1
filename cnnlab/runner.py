"""Start or resume one run and finish it with its report: what `cnnlab run` and sweep workers call."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from cnnlab.engine.trainer import Progress, Trainer, train_run
from cnnlab.errors import CnnlabError
from cnnlab.report.run_report import write_run_report
from cnnlab.runfolder import RunFolder


def _train_and_report(trainer: Trainer, run: RunFolder) -> RunFolder:
    try:
        train_run(trainer, run)
    except CnnlabError:
        write_run_report(run.path)  # a failed run still gets its report (status failed, curves so far)
        raise
    write_run_report(run.path)
    return run


def start_run(cfg, runs_dir: Path, data_root: Path, progress: Progress = Progress(),
              run_dir: Optional[Path] = None) -> RunFolder:
    """Train a new run into `runs_dir/<name>/<date-time>-s<seed>`, or into `run_dir` when one is given."""
    trainer = Trainer(cfg, data_root, progress)
    run = RunFolder.create(runs_dir, cfg) if run_dir is None else RunFolder.create_at(run_dir, cfg)
    progress.message(f"run folder: {run.path}")
    return _train_and_report(trainer, run)


def resume_run(run_dir: Path, data_root: Path, progress: Progress = Progress()) -> RunFolder:
    run = RunFolder.open(run_dir)
    if run.summary().get("status") == "completed":
        progress.message(f"{run.path} has already completed; nothing to resume")
        return run
    trainer = Trainer(run.config(), data_root, progress)
    return _train_and_report(trainer, run)
