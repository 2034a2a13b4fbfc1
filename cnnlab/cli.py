"""The `cnnlab` command: run, resume, invariance, summary, cost, sweep, compare, report, data, experiments, zoo.

User errors print as one line of advice (exit code 2); a run stopped by Ctrl-C or SIGTERM prints the command
that resumes it (exit code 130 or 143); `--debug` anywhere shows the traceback.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Column, Table

from cnnlab.errors import CnnlabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="A laboratory for convolutional neural networks: build, count, train, compare, report.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: where they are looked for and whether they are found.")
app.add_typer(data_app, name="data")
cost_app = typer.Typer(no_args_is_help=True, help="Measured costs of training choices (e.g. fine-tuning only the last layer).")
app.add_typer(cost_app, name="cost")
err = Console(stderr=True)

DATA_DIR = typer.Option(None, "--data-dir", help="data root (default: $CNNLAB_DATA, else ~/.cache/cnnlab/data)")


class DecodeBar:
    """A first decode (or extraction) of a dataset: what it is, said once, then a bar with the time left when
    stdout is a terminal (it stays on screen when it is done)."""

    def __init__(self):
        self.bar = None
        if sys.stdout.isatty():
            self.bar = RichProgress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                    TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
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
            self.bar = RichProgress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                                    TextColumn("{task.fields[loss]}"), transient=True)
        self.task = None

    def hooks(self):
        from cnnlab.engine.trainer import Progress

        return Progress(epoch_start=self.epoch_start, step=self.step, epoch_end=self.epoch_end, message=self.message,
                        decode=DecodeBar())

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
        from cnnlab.api import epoch_line

        print(epoch_line(row, self.epochs), flush=True)

    def message(self, text: str) -> None:
        print(text, flush=True)


@app.command()
def run(
    experiment: str = typer.Argument(..., help="an experiment name (see `cnnlab experiments`) or a path to a YAML file"),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. train.epochs=2 optim.lr=0.01"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="where run folders go"),
    data_dir: Optional[str] = DATA_DIR,
    download: bool = typer.Option(False, "--download", help="download the dataset and torchvision's pretrained weights "
                                  "(model.pretrained: imagenet or coco) if they are missing"),
):
    """Train one experiment into a new run folder, ending with its report; prints the folder last.
    Under torchrun (`torchrun --nproc-per-node=N -m cnnlab run ...`) the N processes train one run."""
    from cnnlab.api import run as run_job
    from cnnlab.engine.distributed import join

    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:
        raise CnnlabError("torchrun restarted this run's processes (--max-restarts), and a restarted `cnnlab run` would "
                          "start a second run; continue the first with `torchrun ... -m cnnlab resume RUN_DIR` "
                          "(restarts of `cnnlab resume` continue from last.pt)")
    with join() as spread:
        done = run_job(experiment, *(overrides or []), runs_dir=runs_dir, data_dir=data_dir, download=download,
                       progress=lambda epochs: ConsoleProgress(epochs).hooks(), spread=spread)
    if spread.main:
        print(done.path)


@app.command()
def invariance(
    experiment: str = typer.Argument(..., help="an experiment that sets data.affine_a / data.affine_b"),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="where run folders go"),
    data_dir: Optional[str] = DATA_DIR,
):
    """Train with and without the input transform y = a*x + b; report how far curves and outputs moved."""
    from cnnlab.config import load_experiment
    from cnnlab.data.root import data_root
    from cnnlab.runner import run_invariance

    cfg = load_experiment(experiment, overrides or [])
    print(run_invariance(cfg, runs_dir, data_root(data_dir), ConsoleProgress(cfg.train.epochs).hooks()))


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="a run folder made by `cnnlab run`"), data_dir: Optional[str] = DATA_DIR):
    """Continue a stopped run from its last checkpoint (under torchrun too: the folder need only be on rank 0's disk)."""
    from cnnlab.api import resume as resume_job
    from cnnlab.engine.distributed import join

    with join() as spread:
        done = resume_job(run_dir, data_dir=data_dir, progress=lambda epochs: ConsoleProgress(epochs).hooks(),
                          spread=spread)
    if spread.main:
        print(done.path)


@app.command()
def sweep(
    experiment: str = typer.Argument(..., help="an experiment name (see `cnnlab experiments`) or a path to a YAML file"),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides for every run, e.g. train.epochs=2"),
    grid: Optional[List[str]] = typer.Option(None, "--grid", help="KEY=V1,V2,...: one axis of the grid (repeat for more axes; values read as YAML); K1,K2=[a,1],[b,2] moves two keys together"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="runs per variant, with seeds seed, seed+1, ... (default 3)"),
    workers: int = typer.Option(1, "--workers", help="worker processes on this machine"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads per worker (default: the machine's cores shared out between the workers)"),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default: a SQLite file in the sweep folder); postgresql://user@host/db lets workers on several machines share the sweep"),
    sweeps_dir: Path = typer.Option(Path("sweeps"), "--sweeps-dir", help="where sweep folders go"),
    worker: bool = typer.Option(False, "--worker", help="join the sweep as workers only (e.g. on another machine): run cells until all are done; no report"),
    trials: Optional[int] = typer.Option(None, "--optuna", metavar="TRIALS", help="an Optuna search of TRIALS trials over the experiment's search: section, instead of a grid"),
    name: Optional[str] = typer.Option(None, "--name", help="the sweep's name (default: the experiment's name and a hash of what the sweep runs)"),
    stale_after: float = typer.Option(120.0, "--stale-after", help="seconds without a heartbeat after which a running cell of another machine's worker is taken over"),
    data_dir: Optional[str] = DATA_DIR,
):
    """Run every combination of the grid for every seed (or an Optuna search), each as an ordinary run folder
    under SWEEP_DIR/runs/; ends with the sweep report and prints the sweep folder last. Run the same command
    again after an interruption: only what is missing runs."""
    from cnnlab.data.root import data_root
    from cnnlab.report.sweep_report import write_sweep_report
    from cnnlab.sweep.compare import analyse
    from cnnlab.sweep.grid import define
    from cnnlab.sweep.launch import run_sweep

    definition = define(experiment, overrides or [], grid or [], seeds, trials, name, ["cnnlab", "sweep", *sys.argv[2:]])
    folder = run_sweep(definition, sweeps_dir, storage, workers, data_root(data_dir), stale_after, threads=threads)
    if not worker:
        analysis = analyse([folder])
        report_path = write_sweep_report(analysis, folder)
        print_comparison(analysis)
        print(f"report: {report_path}")
    print(folder)


def print_comparison(analysis) -> None:
    """The comparison as a table, then one line per test in words."""
    from cnnlab import metrics
    from cnnlab.report.run_report import fmt

    result = analysis.result
    console = Console() if sys.stdout.isatty() else Console(width=160)  # a log or a pipe: wide enough for variant names
    if analysis.definition is not None and analysis.definition.mode == "optuna":
        from cnnlab.sweep.collect import brief
        from cnnlab.sweep.search import objective

        search = analysis.definition.base["search"]
        table = Table("trial", "status", "epochs", "objective", *search["params"], title="Optuna trials")
        for run in sorted(analysis.runs + analysis.skipped, key=lambda r: r.path.name):
            table.add_row(escape(run.path.name), run.status, str(len(run.history)), fmt(objective(run.history, search)),
                          *(escape(brief(run.config.get(k))) for k in search["params"]))
        console.print(table)
        return
    table = Table(Column("variant", overflow="fold"), "n", "final mean ± std", "min", "max", "95% CI",
                  "best mean ± std", "95% CI",
                  title=f"{metrics.label(result['metric'])} over seeds " + ("(one value of summary.json per run)"
                        if result["source"] == "summary" else "(final: last epoch; best: epoch of the best checkpoint)"))
    ci = lambda s: f"[{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}]" if s["ci95"] else "-"
    for v in result["variants"]:
        f, b = v["final"], v["best"]
        table.add_row(escape(v["name"]), str(v["n"]), f"{fmt(f['mean'])} ± {fmt(f['std'])}", fmt(f["min"]), fmt(f["max"]),
                      ci(f), f"{fmt(b['mean'])} ± {fmt(b['std'])}", ci(b))
    console.print(table)
    if result["tests"]:
        tests = Table(Column("a vs b", overflow="fold"), "a − b", "95% CI", "Welch's t", "df", "p", "z", "p (z)", "p (Holm)",
                      title=f"Welch's t-test and z-score of the {result['stat']} {result['metric']}, alpha = {result['alpha']:g}")
        for t in result["tests"]:
            ci = f"[{t['ci95_diff'][0]:+.4f}, {t['ci95_diff'][1]:+.4f}]" if t["ci95_diff"] else "-"
            tests.add_row(f"{escape(t['a'])} vs {escape(t['b'])}", fmt(t["diff"]), ci, fmt(t["t"], 2), fmt(t["df"], 1),
                          fmt(t["p_value"]), fmt(t["z"], 2), fmt(t["z_p_value"]), fmt(t["p_holm"]),
                          style="bold green" if t["significant_holm"] else None)
        console.print(tests)
    for t in result["tests"]:  # a clear win (significant after Holm's correction) in bold, everything else plain
        line = f"{escape(t['a'])} vs {escape(t['b'])} ({result['stat']}): {escape(t['words'])}"
        console.print(f"[bold green]{line}[/]" if t["significant_holm"] else line, highlight=False)
    for line in [result.get("note")] + result["warnings"]:
        if line:
            console.print(f"note: {escape(line)}", highlight=False)
    if result["skipped"]:
        console.print(f"left out: {len(result['skipped'])} runs that did not complete "
                      f"({', '.join(sorted({s['status'] for s in result['skipped']}))})", highlight=False)


@app.command()
def compare(
    paths: List[Path] = typer.Argument(..., help="a sweep folder, or run folders (or folders that hold run folders)"),
    metric: str = typer.Option("val_acc", "--metric", help="a metric recorded per epoch (val_acc, test_acc, val_loss, "
                               "train_loss, ...) or any number of summary.json by its dotted key (sparsity.total.share_below)"),
    by: Optional[List[str]] = typer.Option(None, "--by", help="group runs by these config keys (repeat, or comma-separate); default: the sweep's grid, else every key that differs"),
    output: str = typer.Option("table", "--format", help="table or json"),
    alpha: float = typer.Option(0.05, "--alpha", help="significance level of the tests"),
    stat: str = typer.Option("final", "--stat", help="what the tests compare: final (last epoch) or best (epoch of the best checkpoint, by train.monitor)"),
    log_x: bool = typer.Option(False, "--log-x", help="log-scale epochs in the band plots"),
    out: Optional[Path] = typer.Option(None, "--out", help="where compare.json, the band plots and report.html go (default: the sweep folder, else ./comparison)"),
):
    """Per variant n, mean, std, min, max and 95% CI of the final and best metric; Welch's t-test and z-score for
    every pair, in words; band plots and a report."""
    import json

    from cnnlab.api import compare as compare_job
    from cnnlab.report.sweep_report import write_sweep_report

    if output not in ("table", "json"):
        raise CnnlabError(f"--format must be table or json (got {output})")
    keys = [k.strip() for text in by or [] for k in text.split(",") if k.strip()] or None
    analysis = compare_job(paths, metric, keys, alpha, stat).analysis
    target = out or (paths[0] if analysis.definition is not None else Path("comparison"))
    report_path = write_sweep_report(analysis, target, log_x=log_x)
    if output == "json":
        print(json.dumps(analysis.result, indent=2))
        err.print(f"report: {escape(str(report_path))}", highlight=False)
    else:
        print_comparison(analysis)
        print(f"report: {report_path}")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run folder or a sweep folder")):
    """(Re)write the report.html and report.md of a run or a sweep from its folder."""
    from cnnlab.api import write_report

    if (run_dir / "sweep.json").exists():
        from cnnlab.report.sweep_report import write_sweep_report
        from cnnlab.sweep.compare import analyse

        print(write_sweep_report(analyse([run_dir]), run_dir))
        return
    print(write_report(run_dir))


@app.command()
def experiments():
    """List the experiments `cnnlab run NAME` knows: yours in ./experiments first, then the built-in ones."""
    from cnnlab.config import experiment_description, experiments_dir, known_experiments

    table = Table("name", Column("about", overflow="fold"), "file")
    for name, path in sorted(known_experiments().items()):
        where = "built-in" if path.parent == experiments_dir() else str(path)
        table.add_row(escape(name), escape(experiment_description(path)), escape(where))
    Console().print(table)


@app.command()
def zoo():
    """List the zoo's models with their default input and hyper-parameters."""
    from cnnlab.models.zoo import ZOO

    table = Table(Column("name", no_wrap=True), "input", "hyper-parameters", "about")
    for entry in ZOO.values():
        hyper = " ".join(f"{k}={v}" for k, v in entry.hyper.items())
        table.add_row(escape(entry.name), "x".join(map(str, entry.input)), hyper, escape(entry.doc))  # '[conv-NF, ...]' is text, not markup
    Console().print(table)


MODEL_ARG = typer.Argument(..., help="a zoo name (colour_cnn), a spec file or inline spec ('conv 8 k3 -> ...'), "
                                     "an experiment, a torchvision model (resnet18), or your own nn.Module class or "
                                     "factory (mynet.py:Net, mypackage.nets:Net)")
MODEL_ARGS = typer.Argument(None, help="NAME=VALUE for the model's named hyper-parameters, e.g. NF=32 NC=24 k=3 "
                                       "(your own module's keyword arguments, e.g. width=16 classes=10)")
INPUT = typer.Option(None, "--input", "-i", help="input CxHxW, e.g. 3x32x32 (default: the model's own); "
                                                 "names allowed (1xHxW) for --symbolic or with --set H=32")


def print_output(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command()
def summary(
    model: str = MODEL_ARG,
    args: Optional[List[str]] = MODEL_ARGS,
    input: Optional[str] = INPUT,
    fmt: str = typer.Option("table", "--format", "-f", help="table | markdown | latex | json"),
    columns: Optional[str] = typer.Option(None, "--columns", help="comma-separated columns (name, type, input_shape, "
                                          "output_shape, weights, biases, params, trainable_params, frozen_params, "
                                          "buffers, macs, bias_adds, activation_bytes)"),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="NAME=VALUE, repeatable: a value for a name of the "
                                             "model or the input; with --symbolic the formulas are evaluated"),
    symbolic: bool = typer.Option(False, "--symbolic", help="formulas in the spec's names and the input H, W"),
    scale: Optional[float] = typer.Option(None, "--scale", help="what-if: input height and width times this"),
    separable: bool = typer.Option(False, "--separable", help="what-if: k x k convolutions made depthwise separable"),
    no_bn: bool = typer.Option(False, "--no-bn", help="what-if: without batch norm"),
    explain: bool = typer.Option(False, "--explain", help="the shape arithmetic of every layer"),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="batch size of the training-step memory"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd | momentum | adam | adamw "
                                            "(default: the experiment's, else SGD with momentum)"),
    measure: Optional[bool] = typer.Option(None, "--measure/--no-measure", help="run a real training step to measure "
                                           "its peak memory (default: when it is cheap)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda, for the measured step"),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="also write the per-layer table (all columns) to this CSV file"),
    peers: Optional[List[str]] = typer.Option(None, "--as", help="torchinfo | fvcore | keras (repeatable): the figures "
                                              "that tool prints for this network, and how they follow from cnnlab's"),
    data_dir: Optional[str] = DATA_DIR,
):
    """Per-layer costs of a network: shapes, weights, biases, buffers, MACs, activation memory; totals; training memory.

    The table fits the terminal's width (columns left out are named under it); --format markdown keeps them all."""
    import json

    from cnnlab.api import count

    if fmt not in ("table", "markdown", "latex", "json"):
        raise CnnlabError(f"--format {fmt}: choose table, markdown, latex or json")
    result = count(model, input, (args or []) + (sets or []), data_dir, symbolic=symbolic, scale=scale,
                   separable=separable, no_bn=no_bn, explain=explain, peers=peers or [], measure=measure,
                   batch_size=batch_size, optimizer=optimizer, device=device)
    cols = [c.strip() for c in columns.split(",")] if columns else None
    if csv_file is not None:
        csv_file.write_text(result.to_csv(cols), encoding="utf-8")
    if fmt == "json":
        print_output(json.dumps(result.to_dict(), indent=2))
    else:
        print_output(result.render(fmt, cols))


@app.command()
def layers(
    model: str = typer.Argument(..., help="a zoo name, a spec (file or inline), an experiment, a run folder, a "
                                          "torchvision model (resnet18) or your own module (mynet.py:Net)"),
    args: Optional[List[str]] = MODEL_ARGS,
    input: Optional[str] = typer.Option(None, "--input", "-i", help="input CxHxW, e.g. 3x256x256 (default: the model's own)"),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    data_dir: Optional[str] = DATA_DIR,
):
    """Every module by the name `cnnlab explain --layer` takes, its type and output shape, in order of execution;
    convolutions marked, and the convolutions that `first` and `last` stand for."""
    import json

    from cnnlab.analysis.summary import concrete, subject_and_input
    from cnnlab.explain.layers import list_layers

    if fmt not in ("table", "json"):
        raise CnnlabError(f"--format {fmt}: choose table or json")
    subject, in_shape, given = subject_and_input(model, args or [], input, False, data_dir)
    shape = concrete(in_shape, given)
    listing = list_layers(subject.build(shape), shape)
    if fmt == "json":
        print_output(json.dumps(listing.as_dict(), indent=2))
        return
    table = Table("layer", "type", "output shape", "conv", title=f"{subject.label}, input {'x'.join(map(str, shape))}")
    for row in listing.rows:
        shapes = [" x ".join(map(str, s)) if s is not None else "(not a tensor)" for s in row.output_shapes]
        shown = shapes[0] if len(shapes) == 1 else "; ".join(f"call {i + 1}: {s}" for i, s in enumerate(shapes))
        table.add_row(escape(row.name), row.type, shown or "(did not run)", "conv" if row.is_conv else "")
    Console(width=max(Console().width, 100)).print(table)
    if listing.first is None:
        print("no Conv2d runs in this model: name layers for `cnnlab explain --layer`")
        return
    print(f"first convolution (--layer first): {listing.first}")
    held = (f" (the module that holds {listing.last_conv}, the last Conv2d executed, and ends with its map)"
            if listing.last != listing.last_conv else "")
    print(f"last convolution (--layer last): {listing.last}{held}")


@app.command()
def explain(
    run_dir: Path = typer.Argument(..., help="a classification run folder made by `cnnlab run`"),
    image: Optional[Path] = typer.Option(None, "--image", help="an image file to explain (resized to the model's input, "
                                         "normalised as the run's data)"),
    split: Optional[str] = typer.Option(None, "--split", help="train | val | test: take the image from this split (default test)"),
    index: Optional[int] = typer.Option(None, "--index", help="the example's index in --split (default 0)"),
    layer: Optional[List[str]] = typer.Option(None, "--layer", help="a layer whose activations to show (repeat; "
                                              "names as `cnnlab layers` lists them; default: first and last)"),
    cam_layer: str = typer.Option("last", "--cam-layer", help="the layer of the class activation maps"),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last"),
    data_dir: Optional[str] = DATA_DIR,
):
    """Filters, activations and class activation maps for one image, the confusion matrix and most-confused test
    examples of a run's checkpoint: figures and a self-contained explain.html in the run folder."""
    from cnnlab.api import explain as explain_job

    if image is not None and (split is not None or index is not None):
        raise CnnlabError("give either --image FILE or --split/--index, not both")
    print(explain_job(run_dir, image, split or "test", index or 0, layer or None, cam_layer, checkpoint, data_dir).path)


@cost_app.command("finetune")
def cost_finetune(
    model: str = MODEL_ARG,
    args: Optional[List[str]] = MODEL_ARGS,
    input: Optional[str] = INPUT,
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    steps: int = typer.Option(5, "--steps", min=1, help="timed steps per configuration (after one warm-up step)"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd | momentum | adam | adamw"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    fmt: str = typer.Option("table", "--format", "-f", help="table | markdown | latex | json"),
    data_dir: Optional[str] = DATA_DIR,
):
    """Measured peak memory and time per step: the whole network trained vs only its last layer."""
    import json

    from cnnlab.analysis.finetune import finetune_blocks, finetune_cost
    from cnnlab.analysis.render import render
    from cnnlab.analysis.summary import concrete, subject_and_input
    from cnnlab.device import pick_device
    from cnnlab.analysis.training import OPTIMIZERS

    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise CnnlabError(f"--optimizer {optimizer}: choose {', '.join(OPTIMIZERS)}")
    subject, in_shape, given = subject_and_input(model, args or [], input, False, data_dir)
    shape = concrete(in_shape, given)
    optim = OPTIMIZERS[optimizer] if optimizer else (subject.optim or OPTIMIZERS["momentum"])
    result = finetune_cost(subject.build(shape), subject.label, shape, batch_size, optim, pick_device(device), steps)
    if fmt == "json":
        print_output(json.dumps(result.as_dict(), indent=2))
    else:
        print_output(render(finetune_blocks(result), fmt))


@data_app.command("list")
def data_list(data_dir: Optional[str] = DATA_DIR):
    """Show each dataset, where it was looked for, and whether it was found."""
    from cnnlab.data.registry import DATASETS
    from cnnlab.data.root import data_root
    from cnnlab.data.sources import candidates

    root = data_root(data_dir)
    print(f"data root: {root}")
    table = Table("dataset", "looked for", "kind", "found")
    for name, dataset in DATASETS.items():
        if dataset.given_path:
            table.add_row(name, "data.path (any folder or archive)", dataset.given_path, "-")
            continue
        used = False
        for i, c in enumerate(candidates(name, root)):
            found = "no"
            if c.exists():
                found, used = ("yes" if used else "yes, used"), True
            table.add_row(name if i == 0 else "", escape(str(c.path)), c.kind, found)
    Console(width=160).print(table)


def interruption(error: Optional[BaseException]) -> Optional[KeyboardInterrupt]:
    """The Ctrl-C or stopped run behind an exit (typer turns a KeyboardInterrupt into exit code 130), if any."""
    while error is not None and not isinstance(error, KeyboardInterrupt):
        error = error.__cause__ or error.__context__
    return error


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    args = [a for a in sys.argv[1:] if a != "--debug"]
    rank = os.environ.get("RANK", "0")
    who = "" if rank == "0" else f"[rank {rank}] "  # under torchrun every process reports; rank 0 plainly
    try:
        app(args=args, prog_name="cnnlab")  # exits itself; usage errors are shown by typer
    except Exception as e:
        dist = sys.modules.get("torch.distributed")  # loaded only if a command used it
        lost = dist is not None and isinstance(e, dist.DistError)
        if debug or not (isinstance(e, CnnlabError) or lost):
            raise
        message = (f"another process of this run stopped or cannot be reached ({type(e).__name__}); see its own "
                   "messages" if lost else str(e))
        err.print(f"{who}[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except SystemExit as e:
        stop = interruption(e)
        if stop is None:
            raise
        if debug:
            raise stop from None
        err.print(f"{who}[bold yellow]{escape(str(stop) or 'interrupted')}[/]", highlight=False, soft_wrap=True)
        sys.exit(getattr(stop, "exit_code", 130))

if __name__ == "__main__":
    main()
