"""The report of one run, in every format asked for, from its run folder alone (so runs made yesterday,
elsewhere or by torchrun report the same way)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from cnnlab.errors import CnnlabError
from cnnlab.records import RunSummary
from cnnlab.report.inside import redraw_damaged
from cnnlab.report.page import write_report
from cnnlab.report.run_blocks import run_blocks
from cnnlab.runfolder import RunFolder


def write_run_report(
    run_dir: Path, summary: Optional[RunSummary] = None, formats: tuple = ("html", "md")
) -> dict[str, Path]:
    """Draw the figures into the run folder and write the report beside them; of `summary` when given (the
    runner writes the report of a run's end before it records that end in summary.json)."""
    run = RunFolder.open(run_dir)
    summary = summary or run.summary()
    if summary is None:
        raise CnnlabError(
            f"{run.path} has no summary.json yet (the run has not finished its first epoch); report it once it has"
        )
    blocks = run_blocks(run, redraw_damaged(run, summary), run.metrics())
    return write_report(run.path, f"cnnlab report: {summary.name} / {run.path.name}", blocks, formats)
