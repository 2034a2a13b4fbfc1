"""The jobs as Python functions that return objects (issue 18.2): what `import cnnlab` offers and the command line
calls. Results show themselves in a notebook (`_repr_html_`), figures are matplotlib Figures on their own Agg
canvas, user errors raise CnnlabError, and nothing here exits the process or prints past its progress lines.

A run's summary is its typed record (cnnlab.records.RunSummary); tables and comparisons show in a notebook as
the same blocks every report is written from (cnnlab.document).
"""

from __future__ import annotations

import dataclasses
import html
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Optional, Union

from cnnlab.errors import CnnlabError

Shape = Union[tuple, list, str, None]


# ---- progress ---------------------------------------------------------------------------------------------------


def _kernel_display():
    """An updatable display in a Jupyter kernel (None elsewhere: a plain log gets the epoch lines alone)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is None or not hasattr(shell, "kernel"):
        return None
    from IPython.display import Pretty, display

    return display(Pretty(""), display_id=True)


class LineProgress:
    """A run's progress as lines: one per epoch (a log or a notebook shows them), and in a notebook one line that
    follows the steps of the epoch under way."""

    def __init__(self, epochs: int):
        self.epochs, self.handle, self.epoch, self.batches, self.done, self.shown = epochs, None, 0, 0, 0, 0.0

    def hooks(self):
        from cnnlab.engine.trainer import Progress

        return Progress(
            epoch_start=self.epoch_start,
            step=self.step,
            epoch_end=self.epoch_end,
            message=lambda text: print(text, flush=True),
            decode=self.decode,
        )

    def epoch_start(self, epoch: int, batches: int) -> None:
        self.epoch, self.batches, self.done = epoch, batches, 0
        self.handle = self.handle or _kernel_display()

    def step(self, loss: Optional[float]) -> None:
        self.done += 1
        if self.handle is not None and (time.monotonic() - self.shown > 0.5 or self.done == self.batches):
            self.shown = time.monotonic()
            from IPython.display import Pretty

            self.handle.update(
                Pretty(
                    f"epoch {self.epoch}/{self.epochs}: step {self.done}/{self.batches}"
                    + (f", training loss {loss:.4f}" if loss is not None else "")
                )
            )

    def epoch_end(self, row: dict) -> None:
        from cnnlab.console import epoch_line

        print(epoch_line(row, self.epochs), flush=True)

    @staticmethod
    def decode(done: int, total: int, what: str) -> None:
        if done == 0:
            print(what, flush=True)


def _progress(progress, epochs: Callable[[], int], spread):
    """The hooks a run reports to: lines (True), nothing (False), or those a factory of the epoch count makes (the
    command line's bars); only the main process of a spread run shows any."""
    from cnnlab.engine.trainer import Progress

    if progress is False or not spread.main:
        return Progress()
    return LineProgress(epochs()).hooks() if progress is True else progress(epochs())


# ---- showing results --------------------------------------------------------------------------------------------


def _pandas():
    try:
        import pandas
    except ImportError:
        raise CnnlabError("to_pandas needs pandas: pip install pandas") from None
    return pandas


class Records(list):
    """Records (dicts), one a row: a list, and a DataFrame where pandas is installed."""

    def to_pandas(self):
        return _pandas().DataFrame(list(self))


def _iframe(text: str, height: int = 600) -> str:
    return f'<iframe srcdoc="{html.escape(text)}" style="width:100%;height:{height}px;border:0"></iframe>'


# ---- summary ----------------------------------------------------------------------------------------------------


class Summary:
    """What `cnnlab summary` counts: per layer and in total; a table in a notebook."""

    def __init__(self, counted):
        self.result = counted  # cnnlab.analysis.network_summary.Summary

    params = property(lambda self: self.result.base.total["params"])
    macs = property(lambda self: self.result.base.total["macs"])
    total = property(lambda self: dict(self.result.base.total))
    rows = property(lambda self: Records(row.as_dict() for row in self.result.base.rows))

    @property
    def record(self):
        """The count as its typed record (cnnlab.records.Counts), with the cnnlab version that made it."""
        from cnnlab.analysis.network_summary import counts_record

        return counts_record(self.result)

    def to_dict(self) -> dict:
        return self.record.to_dict()

    def to_csv(self, columns: Optional[list[str]] = None) -> str:
        """The per-layer table (every column, or `columns`) as CSV."""
        from cnnlab.analysis.network_summary import main_table
        from cnnlab.document import to_csv

        return to_csv(main_table(self.result, columns))

    def render(self, fmt: str = "table", columns: Optional[list[str]] = None) -> str:
        """table (terminal text), markdown, latex or html."""
        from cnnlab.analysis.network_summary import document
        from cnnlab.document import render

        return render(document(self.result, columns), fmt)

    def to_latex(self) -> str:
        return self.render("latex")

    def to_markdown(self) -> str:
        return self.render("markdown")

    def to_pandas(self):
        return self.rows.to_pandas()

    def _repr_html_(self) -> str:
        return self.render("html")

    def __repr__(self) -> str:
        return f"<cnnlab.Summary {self.result.base.label}: {self.params:,} parameters, {self.macs:,} MACs per image>"


def _shape_text(input: Shape) -> Optional[str]:
    return "x".join(map(str, input)) if isinstance(input, (tuple, list)) else input


def _module_subject(model, values: dict):
    """A module instance counted as it is (a copy: a measured training step leaves the user's weights alone), or a
    class or factory (`values`: its keyword arguments, classes=K its class count); with the context it needs."""
    import copy

    from torch import nn

    from cnnlab.analysis.subject import Subject, own_subject
    from cnnlab.models import user

    if isinstance(model, nn.Module):
        if values:
            raise CnnlabError(f"{', '.join(values)}: a module instance is counted as it is; give its class to set them")
        return Subject(type(model).__name__, None, factory=lambda shape: copy.deepcopy(model), own=True), nullcontext()
    given = user.given(model)
    return own_subject(user.ref_of(model), values, None, getattr(model, "__qualname__", repr(model))), given


def count(
    model,
    input: Shape,
    assignments: list[str],
    data_dir: Optional[str] = None,
    symbolic: bool = False,
    scale: Optional[float] = None,
    separable: bool = False,
    no_bn: bool = False,
    explain: bool = False,
    peers: tuple = (),
    measure: Optional[bool] = False,
    batch_size: int = 32,
    optimizer: Optional[str] = None,
    device: str = "auto",
) -> Summary:
    """`summary` with the model's values as NAME=VALUE text (the command line's); the what-if, formula and peer
    options are `cnnlab summary`'s."""
    from cnnlab.analysis.network_summary import Options, subject_and_input, summarise
    from cnnlab.analysis.whatif import WhatIf
    from cnnlab.optimizers import OPTIMIZERS

    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise CnnlabError(f"--optimizer {optimizer}: choose {', '.join(OPTIMIZERS)}")
    if isinstance(model, str):
        subject, in_shape, given = subject_and_input(model, assignments, _shape_text(input), symbolic, data_dir)
        held = nullcontext()
    else:
        if input is None:
            raise CnnlabError("give the input size: cnnlab.summary(model, input=(3, 32, 32))")
        from cnnlab.analysis.subject import parse_assignments

        values = parse_assignments(assignments, whole=False)
        (subject, held), given = _module_subject(model, values), {}
        in_shape = tuple(int(d) for d in (input.split("x") if isinstance(input, str) else input))
    with held:
        opts = Options(
            symbolic=symbolic,
            given=given,
            whatif=WhatIf(scale, separable, no_bn),
            explain=explain,
            batch_size=batch_size,
            optimizer=optimizer,
            measure=measure,
            device=device,
            peers=list(peers),
        )
        return Summary(summarise(subject, in_shape, opts))


def summary(model, input: Shape = None, *, measure: bool = False, data_dir: Optional[str] = None, **values) -> Summary:
    """Count a network: an nn.Module (instance, class or factory), a zoo name, a spec, a file.py:Name, an experiment
    or a run folder, at `input` (C, H, W); `values` are its named hyper-parameters or keyword arguments (classes=K).
    `measure` runs a real training step for its peak memory; `count`'s options (symbolic, scale, ...) apply too."""
    options = {k: values.pop(k) for k in list(values) if k in COUNT_OPTIONS}
    return count(model, input, [f"{k}={v}" for k, v in values.items()], data_dir, measure=measure, **options)


COUNT_OPTIONS = ("symbolic", "scale", "separable", "no_bn", "explain", "peers", "batch_size", "optimizer", "device")


# ---- runs -------------------------------------------------------------------------------------------------------


def _read_summary(path: Path):
    """A run's summary.json as its typed record (cnnlab.records.RunSummary); CnnlabError before it has one."""
    from cnnlab.runfolder import RunFolder

    summary = RunFolder(path).summary()
    if summary is None:
        raise CnnlabError(f"{path} has no summary.json yet: the run has not finished its first epoch")
    return summary


class Report:
    """A run's report.html, shown inline in a notebook."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _repr_html_(self) -> str:
        return _iframe(self.path.read_text(encoding="utf-8"))

    def __repr__(self) -> str:
        return f"<cnnlab.Report {self.path}>"


def write_report(folder, formats: tuple = ("html", "md")) -> dict:
    """(Re)write the report of a run or a sweep folder in `formats` (html, md, latex, pdf); the files written, by
    format. A run of the user's own module only while its file is the one the run began with (the report would
    describe another network)."""
    from cnnlab.report.reports import write_folder_report
    from cnnlab.runfolder import RunFolder
    from cnnlab.sweep.grid import DEFINITION

    if not (Path(folder) / DEFINITION).exists() and (Path(folder) / "config.yaml").exists():
        run = RunFolder.open(folder)
        run.check_model_source(run.config())
    return write_folder_report(Path(folder), formats)


class Run:
    """A run folder: its summary, per-epoch metrics, report and figures."""

    def __init__(self, path):
        from cnnlab.runfolder import RunFolder

        self.path = RunFolder.open(path).path

    summary = property(lambda self: _read_summary(self.path))
    status = property(lambda self: self.summary.status)

    @property
    def metrics(self) -> Records:
        from cnnlab.runfolder import RunFolder

        return Records(RunFolder(self.path).metrics())

    @property
    def config(self) -> dict:
        from cnnlab.runfolder import RunFolder

        return RunFolder(self.path).config().model_dump(mode="json")

    def figure(self, metric: str = "loss", log_x: bool = False):
        """The curves of `metric` (loss, acc, ...) for every split against epochs, as a matplotlib Figure."""
        from cnnlab.viz.curves import draw_metric

        return draw_metric(self.metrics, metric, log_x=log_x)

    @property
    def figures(self) -> dict:
        """Each metric the run recorded per split (loss, acc, ...) as a Figure."""
        from cnnlab import metrics

        recorded = {k for row in self.metrics for k in row}
        return {m: self.figure(m) for m in metrics.SPLIT_METRICS if metrics.split_key("train", m) in recorded}

    def report(self) -> Report:
        """The run's report (written first where it is missing)."""
        path = self.path / "report.html"
        return Report(path if path.exists() else write_report(self.path)["html"])

    def _repr_html_(self) -> str:
        from cnnlab.document import Table, render
        from cnnlab.report.run_blocks import final_rows, status_text

        s = self.summary
        return render(
            [status_text(s, self.path.name), Table("Final metrics", ["metric", "value"], final_rows(s))], "html"
        )

    def __repr__(self) -> str:
        return f"<cnnlab.Run {self.path} ({self.status})>"


def _config(experiment: Union[str, Path, dict], overrides: list[str], model_ref: Optional[str]):
    from cnnlab.experiment_files import load_dict, load_experiment

    if isinstance(experiment, dict):
        return load_dict(experiment, overrides, model_ref)
    return load_experiment(str(experiment), overrides, model_ref)


def _given(model: Optional[Callable]):
    """The name a class handed over from Python runs under, and the context while it may be loaded by that name."""
    from cnnlab.models import user

    if model is None:
        return None, nullcontext()
    return user.ref_of(model), user.given(model)


def run(
    experiment: Union[str, Path, dict],
    *overrides: str,
    model: Optional[Callable] = None,
    runs_dir: Union[str, Path] = "runs",
    data_dir: Optional[str] = None,
    progress=True,
    download: bool = False,
    spread=None,
) -> Optional[Run]:
    """Train an experiment (a name, a YAML path or a dict) with `key=value` overrides into a new run folder; `model`
    is an nn.Module class or factory of yours (defined in a notebook too) that replaces the experiment's model.
    `download` fetches a missing dataset and torchvision's weights; `spread`: the processes of a torchrun launch
    (the command line's; the Run is returned by the main one)."""
    from cnnlab.data.root import data_root
    from cnnlab.data.sources import download as fetch
    from cnnlab.engine.distributed import ONE_PROCESS
    from cnnlab.runner import start_run

    spread = spread or ONE_PROCESS
    ref, held = _given(model)
    with held:
        cfg = _config(experiment, list(overrides), ref)
        root = data_root(data_dir)
        if download:  # one process per machine downloads; the others wait for it
            found = spread.everywhere(lambda: fetch(cfg.data.dataset, root) if spread.local_rank == 0 else None)
            if found is not None and spread.main:
                print(f"{cfg.data.dataset} is already at {found}; nothing downloaded")
        folder = start_run(
            cfg,
            Path(runs_dir),
            root,
            _progress(progress, lambda: cfg.train.epochs, spread),
            download=download,
            spread=spread,
        )
    return Run(folder.path) if spread.main else None


def resume(
    run_dir, model: Optional[Callable] = None, data_dir: Optional[str] = None, progress=True, spread=None
) -> Optional[Run]:
    """Continue a stopped run; a run of a class handed over from Python needs that class again (`model`), checked
    against the source the run recorded. Under torchrun (`spread`) the folder need only be on the main's disk."""
    from cnnlab.data.root import data_root
    from cnnlab.engine.distributed import ONE_PROCESS
    from cnnlab.runfolder import RunFolder
    from cnnlab.runner import resume_run

    spread = spread or ONE_PROCESS
    ref, held = _given(model)
    recorded = RunFolder.open(run_dir).config() if spread.main else None
    if ref is not None and recorded is not None and ref != recorded.model.name:
        raise CnnlabError(f"{run_dir} was trained with {recorded.model.name}; model={ref} is another class")
    with held:
        folder = resume_run(
            Path(run_dir), data_root(data_dir), _progress(progress, lambda: recorded.train.epochs, spread), spread
        )
    return Run(folder.path) if spread.main else None


def load(path) -> Union[Run, "Comparison"]:
    """A run folder as a Run; a sweep folder as its Comparison."""
    if (Path(path) / "sweep.json").exists():
        return compare(path)
    return Run(path)


# ---- comparisons and explanations -------------------------------------------------------------------------------


class Comparison:
    """`cnnlab compare`'s table of final metrics per variant, the statistics of each metric over seeds and the
    verdict of every pair in words (cnnlab.records.Comparison), shown as the same tables in a notebook."""

    def __init__(self, analysis):
        self.analysis = analysis  # cnnlab.sweep.compare.Analysis

    record = property(lambda self: self.analysis.comparison)
    variants = property(lambda self: Records(dataclasses.asdict(v) for v in self.record.headline.variants))
    tests = property(lambda self: Records(dataclasses.asdict(t) for c in self.record.columns for t in c.tests))
    verdicts = property(
        lambda self: [f"{t.a} vs {t.b} ({c.metric}, {c.stat}): {t.words}" for c in self.record.columns for t in c.tests]
    )

    def figure(self, key: Optional[str] = None, log_x: bool = False):
        """Every variant's curve of `key` (default: the headline metric) with its min-max band over seeds."""
        from cnnlab.viz.bands import draw_bands

        curves = [(v.name, [r.history for r in v.runs]) for v in self.analysis.variants]
        return draw_bands(curves, key or self.record.headline.metric, log_x=log_x)

    def write_report(self, folder=None, log_x: bool = False, formats: tuple = ("html", "md")) -> dict:
        """compare.json, the figures and the report in `folder` (default: comparisons/<name>, never a sweep's own
        folder); the files written, by format."""
        from cnnlab.report.reports import default_out
        from cnnlab.report.sweep_report import write_sweep_report

        return write_sweep_report(self.analysis, Path(folder or default_out(self.analysis)), log_x, formats)

    def _repr_html_(self) -> str:
        from cnnlab.document import render
        from cnnlab.report.compare_blocks import comparison_blocks

        return render(comparison_blocks(self.record), "html")

    def __repr__(self) -> str:
        return f"<cnnlab.Comparison of {len(self.record.variant_names)} variants by {len(self.record.columns)} metrics>"


def compare(
    runs_or_sweep,
    metric: Union[str, list, None] = None,
    by: Optional[list[str]] = None,
    alpha: float = 0.05,
    stat: str = "final",
) -> Comparison:
    """Compare runs (Run objects or folders, or folders that hold them) or a sweep folder, as `cnnlab compare`: by
    default on the task's final metrics, else on `metric` (one name or several) at `stat`."""
    from cnnlab.sweep.compare import analyse

    items = runs_or_sweep if isinstance(runs_or_sweep, (list, tuple)) else [runs_or_sweep]
    paths = [item.path if isinstance(item, Run) else Path(item) for item in items]
    names = [metric] if isinstance(metric, str) else metric
    return Comparison(analyse(paths, names, by, alpha, stat))


class Explanation:
    """`cnnlab explain`'s figures of one image and the checkpoint's confusion, as written to explain.html."""

    def __init__(self, path: Path):
        import json

        self.path = Path(path)
        self.record = json.loads((self.path.parent / "explain.json").read_text())
        self.images = {Path(f["file"]).stem: self.path.parent / f["file"] for f in self.record["figures"]}

    def _repr_html_(self) -> str:
        return _iframe(self.path.read_text(encoding="utf-8"), height=900)

    def __repr__(self) -> str:
        return f"<cnnlab.Explanation {self.path}: {', '.join(self.images)}>"


def explain(
    run,
    image=None,
    split: str = "test",
    index: int = 0,
    layers: Optional[list[str]] = None,
    cam_layer: str = "last",
    checkpoint: str = "best",
    data_dir: Optional[str] = None,
) -> Explanation:
    """Filters, activations and class activation maps of a classification run's checkpoint for one image (a file,
    else example `index` of `split`), its confusion matrix and most-confused examples."""
    from cnnlab.data.root import data_root
    from cnnlab.report.explain_report import write_explain

    path = run.path if isinstance(run, Run) else Path(run)
    return Explanation(
        write_explain(
            path,
            data_root(data_dir),
            Path(image) if image is not None else None,
            split,
            index,
            layers,
            cam_layer,
            checkpoint,
        )
    )
