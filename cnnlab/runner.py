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


def run_invariance(cfg, runs_dir: Path, data_root: Path, progress: Progress = Progress()) -> Path:
    """Train `cfg` as given (with its y = a*x + b) and again plain (a=1, b=0); report how far it moved."""
    import time

    from cnnlab.analysis.invariance import compare
    from cnnlab.report.invariance_report import write_invariance_report

    if cfg.data.affine_a == 1.0 and cfg.data.affine_b == 0.0:
        raise CnnlabError("the experiment has no input transform: set data.affine_a and/or data.affine_b (y = a*x + b)")
    plain_cfg = cfg.model_copy(update={"name": f"{cfg.name}-plain",
                                       "data": cfg.data.model_copy(update={"affine_a": 1.0, "affine_b": 0.0})})
    plain = start_run(plain_cfg, runs_dir, data_root, progress)
    moved = start_run(cfg.model_copy(update={"name": f"{cfg.name}-affine"}), runs_dir, data_root, progress)
    folder = Path(runs_dir) / cfg.name / time.strftime("invariance-%Y%m%d-%H%M%S")
    return write_invariance_report(folder, compare(plain, moved, data_root), plain, moved).parent
