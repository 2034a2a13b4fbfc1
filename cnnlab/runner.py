"""Start or resume one run and finish it: `cnnlab run`, `cnnlab resume` and sweep workers call these.

The end of a run is decided and recorded here and nowhere else: completed (with its prediction figures),
failed (the loss diverged, or another error while training), pruned (a sweep's pruner stopped it) or
stopped (Ctrl-C); each but stopped ends with the run's report.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from cnnlab.engine.build import BuiltRun, build_run
from cnnlab.engine.flags import torch_flags
from cnnlab.engine.startup import clock_origin
from cnnlab.engine.trainer import Progress, Pruned, Trainer
from cnnlab.errors import CnnlabError
from cnnlab.report.predictions import draw_predictions
from cnnlab.report.run_report import write_run_report
from cnnlab.runfolder import RunFolder


def _end(run: RunFolder, summary: dict) -> None:
    run.write_summary(summary)
    write_run_report(run.path)


def _train_and_finish(built: BuiltRun, run: RunFolder, progress: Progress) -> RunFolder:
    trainer = Trainer(built, progress)
    trainer.attach(run)
    try:
        trainer.fit()
    except CnnlabError as e:
        _end(run, trainer.summary("failed", str(e)))  # a failed run keeps its report (curves so far)
        raise
    except Pruned:
        _end(run, {**trainer.summary("pruned"), "pruned_at_epoch": trainer.state.epoch})
        return run
    except KeyboardInterrupt:
        run.write_summary(trainer.summary("stopped"))
        raise
    _end(run, {**trainer.summary("completed"), "figures": draw_predictions(built, run)})
    return run


def start_run(cfg, runs_dir: Path, data_root: Path, progress: Progress = Progress(),
              run_dir: Optional[Path] = None) -> RunFolder:
    """Train a new run into `runs_dir/<name>/<date-time>-s<seed>`, or into `run_dir` when one is given."""
    started_at = clock_origin()
    with torch_flags(cfg.deterministic):
        built = build_run(cfg, data_root, started_at)  # before the folder: a bad config or missing data makes none
        run = RunFolder.create(runs_dir, cfg) if run_dir is None else RunFolder.create_at(run_dir, cfg)
        progress.message(f"run folder: {run.path}")
        return _train_and_finish(built, run, progress)


def resume_run(run_dir: Path, data_root: Path, progress: Progress = Progress()) -> RunFolder:
    """Continue a run from its last.pt, as if it had never stopped; a completed run is left as it is."""
    run = RunFolder.open(run_dir)
    if run.summary().get("status") == "completed":
        progress.message(f"{run.path} has already completed; nothing to resume")
        return run
    cfg, started_at = run.config(), clock_origin()
    with torch_flags(cfg.deterministic):
        return _train_and_finish(build_run(cfg, data_root, started_at), run, progress)


def run_invariance(cfg, runs_dir: Path, data_root: Path, progress: Progress = Progress()) -> Path:
    """Train `cfg` as given (with its y = a*x + b) and again plain (a=1, b=0); report how far it moved."""
    import time

    from cnnlab.report.invariance import compare
    from cnnlab.report.invariance_report import write_invariance_report

    if cfg.data.affine_a == 1.0 and cfg.data.affine_b == 0.0:
        raise CnnlabError("the experiment has no input transform: set data.affine_a and/or data.affine_b (y = a*x + b)")
    plain_cfg = cfg.model_copy(update={"name": f"{cfg.name}-plain",
                                       "data": cfg.data.model_copy(update={"affine_a": 1.0, "affine_b": 0.0})})
    plain = start_run(plain_cfg, runs_dir, data_root, progress)
    moved = start_run(cfg.model_copy(update={"name": f"{cfg.name}-affine"}), runs_dir, data_root, progress)
    folder = Path(runs_dir) / cfg.name / time.strftime("invariance-%Y%m%d-%H%M%S")
    return write_invariance_report(folder, compare(plain, moved, data_root), plain, moved).parent
