"""The report jobs over folders: `cnnlab report` (a run or a sweep), and where `cnnlab compare` writes."""

from __future__ import annotations

from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.report.run_report import write_run_report
from cnnlab.report.sweep_report import write_sweep_report
from cnnlab.sweep.compare import Analysis, analyse
from cnnlab.sweep.grid import DEFINITION


def write_folder_report(folder: Path, formats: tuple = ("html", "md")) -> dict[str, Path]:
    folder = Path(folder)
    if (folder / DEFINITION).exists():
        return write_sweep_report(analyse([folder]), folder, formats=formats)
    if not (folder / "config.yaml").exists():
        raise CnnlabError(
            f"{folder} is neither a run folder (config.yaml) nor a sweep folder ({DEFINITION}); give "
            "a folder that `cnnlab run` or `cnnlab sweep` made"
        )
    return write_run_report(folder, formats=formats)


def default_out(analysis: Analysis) -> Path:
    """A comparison's own folder, never a sweep's (whose report.html is the sweep's report):
    comparisons/<sweep name>, or comparisons/<experiment>-vs-<experiment> for runs."""
    if analysis.definition is not None:
        name = analysis.definition.name
    else:
        names = list(dict.fromkeys(str(r.config.get("name", "runs")) for r in analysis.runs))
        name = "-vs-".join(names)[:100]
    return Path("comparisons") / name
