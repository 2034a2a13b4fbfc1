"""The `cnnlab` command: run, resume, invariance, summary, cost, sweep, compare, report, data, experiments, zoo.

User errors print as one line of advice (exit code 2); a run stopped by Ctrl-C or SIGTERM prints the command
that resumes it (exit code 130 or 143); `--debug` anywhere shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from cnnlab.atomic import cannot_write, read_only, write_text
from cnnlab.console import ConsoleProgress
from cnnlab.errors import CnnlabError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="A laboratory for convolutional neural networks: build, count, train, compare, report.",
)
data_app = typer.Typer(no_args_is_help=True, help="Datasets: where they are looked for and whether they are found.")
app.add_typer(data_app, name="data")
cost_app = typer.Typer(
    no_args_is_help=True, help="Measured costs of training choices (e.g. fine-tuning only the last layer)."
)
app.add_typer(cost_app, name="cost")
err = Console(stderr=True)


def show_version(asked: bool) -> None:
    if asked:
        from cnnlab.version import made_by

        print(made_by())  # cnnlab 0.1.0, and the commit when run from a checkout
        raise typer.Exit()


@app.callback()
def options(
    version: bool = typer.Option(
        False, "--version", callback=show_version, is_eager=True, help="print cnnlab's version and exit"
    ),
):
    """A laboratory for convolutional neural networks: build, count, train, compare, report."""


DATA_DIR = typer.Option(None, "--data-dir", help="data root (default: $CNNLAB_DATA, else ~/.cache/cnnlab/data)")


@app.command()
def run(
    experiment: str = typer.Argument(
        ..., help="an experiment name (see `cnnlab experiments`) or a path to a YAML file"
    ),
    overrides: Optional[List[str]] = typer.Argument(
        None, help="key=value overrides, e.g. train.epochs=2 optim.lr=0.01"
    ),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="where run folders go"),
    data_dir: Optional[str] = DATA_DIR,
    download: bool = typer.Option(
        False,
        "--download",
        help="download the dataset and torchvision's pretrained weights "
        "(model.pretrained: imagenet or coco) if they are missing",
    ),
    dry: bool = typer.Option(False, "--dry-run", help="print the resolved config and the model's size; train nothing"),
):
    """Train one experiment into a new run folder, ending with its report; prints the folder last.
    Under torchrun (`torchrun --nproc-per-node=N -m cnnlab run ...`) the N processes train one run."""
    from cnnlab.api import run as run_job
    from cnnlab.experiment_files import load_experiment
    from cnnlab.engine.distributed import join

    if dry:
        from cnnlab.analysis.dry_run import dry_run

        print(dry_run(load_experiment(experiment, overrides or []), data_dir), end="")
        return
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:
        raise CnnlabError(
            "torchrun restarted this run's processes (--max-restarts), and a restarted `cnnlab run` would "
            "start a second run; continue the first with `torchrun ... -m cnnlab resume RUN_DIR` "
            "(restarts of `cnnlab resume` continue from last.pt)"
        )
    with join() as spread:
        done = run_job(
            experiment,
            *(overrides or []),
            runs_dir=runs_dir,
            data_dir=data_dir,
            download=download,
            progress=lambda epochs: ConsoleProgress(epochs).hooks(),
            spread=spread,
        )
    if spread.main:
        print(done.path)


@app.command("lr-find")
def lr_find(
    experiment: str = typer.Argument(..., help="an experiment name or a path to a YAML file"),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. optim.name=adam"),
    out: Optional[Path] = typer.Option(
        None, "--out", help="where lr_find.png and lr_find.json go (default: runs/<name>/lr-find-<date-time>)"
    ),
    start_lr: float = typer.Option(1e-7, "--start-lr", help="the first rate of the ramp"),
    end_lr: float = typer.Option(10.0, "--end-lr", help="the last rate, unless the loss diverges first"),
    steps: int = typer.Option(100, "--steps", help="training steps (batches) of the ramp"),
    data_dir: Optional[str] = DATA_DIR,
):
    """The learning-rate range test: rates growing exponentially over training batches, the smoothed loss, a plot
    and a suggested optim.lr (where the loss falls fastest); no run is made."""
    import time

    from cnnlab.experiment_files import load_experiment
    from cnnlab.data.root import data_root
    from cnnlab.tuning import find_lr

    cfg = load_experiment(experiment, overrides or [])
    folder = out or Path("runs") / cfg.name / time.strftime("lr-find-%Y%m%d-%H%M%S")
    result = find_lr(cfg, data_root(data_dir), folder, start_lr, end_lr, steps)
    shown = f"{result.suggestion:.3g}" if result.suggestion is not None else "none (too few steps before the minimum)"
    print(f"{result.steps} steps from {result.start_lr:.3g} to {result.end_lr:.3g}: {result.stopped}")
    print(f"lowest smoothed loss {min(result.smoothed):.4f} at lr {result.minimum_lr:.3g}; suggested optim.lr: {shown}")
    print(folder)


@app.command()
def invariance(
    experiment: str = typer.Argument(..., help="an experiment that sets data.affine_a / data.affine_b"),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="where run folders go"),
    data_dir: Optional[str] = DATA_DIR,
):
    """Train with and without the input transform y = a*x + b; report how far curves and outputs moved."""
    from cnnlab.experiment_files import load_experiment
    from cnnlab.data.root import data_root
    from cnnlab.runner import run_invariance

    cfg = load_experiment(experiment, overrides or [])
    print(run_invariance(cfg, runs_dir, data_root(data_dir), ConsoleProgress(cfg.train.epochs).hooks()))


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="a run folder made by `cnnlab run`"), data_dir: Optional[str] = DATA_DIR
):
    "Continue a stopped run from its last checkpoint (under torchrun too: the folder need only be on rank 0's disk)."
    from cnnlab.api import resume as resume_job
    from cnnlab.engine.distributed import join

    with join() as spread:
        done = resume_job(
            run_dir, data_dir=data_dir, progress=lambda epochs: ConsoleProgress(epochs).hooks(), spread=spread
        )
    if spread.main:
        print(done.path)


SWEEP_GRID = typer.Option(
    None,
    "--grid",
    help="KEY=V1,V2,...: one axis of the grid (repeat for more axes; values read as YAML); "
    + escape("K1,K2=[a,1],[b,2] moves two keys together"),
)
SWEEP_STORAGE = typer.Option(
    None,
    "--storage",
    help="Optuna storage URL (default: a SQLite file in the sweep folder); "
    "postgresql://user@host/db lets workers on several machines share the sweep",
)
SWEEP_WORKER = typer.Option(
    False,
    "--worker",
    help="join the sweep as workers only (e.g. on another machine): run cells until all are done; no report",
)
SWEEP_TRIALS = typer.Option(
    None,
    "--optuna",
    metavar="TRIALS",
    help="an Optuna search of TRIALS trials over the experiment's search: section, instead of a grid",
)
SWEEP_STALE = typer.Option(
    120.0,
    "--stale-after",
    help="seconds without a heartbeat after which a running cell of another machine's worker is taken over",
)


@app.command()
def sweep(
    experiment: str = typer.Argument(
        ..., help="an experiment name (see `cnnlab experiments`) or a path to a YAML file"
    ),
    overrides: Optional[List[str]] = typer.Argument(
        None, help="key=value overrides for every run, e.g. train.epochs=2"
    ),
    grid: Optional[List[str]] = SWEEP_GRID,
    seeds: Optional[int] = typer.Option(None, "--seeds", help="runs per variant, seeds seed, seed+1, ... (default 3)"),
    workers: int = typer.Option(1, "--workers", help="worker processes on this machine"),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="torch threads per worker (default: the machine's cores shared out between the workers)"
    ),
    storage: Optional[str] = SWEEP_STORAGE,
    sweeps_dir: Path = typer.Option(Path("sweeps"), "--sweeps-dir", help="where sweep folders go"),
    worker: bool = SWEEP_WORKER,
    trials: Optional[int] = SWEEP_TRIALS,
    name: Optional[str] = typer.Option(
        None, "--name", help="the sweep's name (default: the experiment's name and a hash of what the sweep runs)"
    ),
    stale_after: float = SWEEP_STALE,
    data_dir: Optional[str] = DATA_DIR,
):
    """Run every combination of the grid for every seed (or an Optuna search), each as an ordinary run folder
    under SWEEP_DIR/runs/; ends with the sweep report and prints the sweep folder last. Run the same command
    again after an interruption: only what is missing runs."""
    from cnnlab.data.root import data_root
    from cnnlab.document import to_text
    from cnnlab.report.compare_blocks import comparison_blocks
    from cnnlab.report.sweep_report import write_sweep_report
    from cnnlab.sweep.compare import analyse
    from cnnlab.sweep.grid import define
    from cnnlab.sweep.launch import run_sweep

    definition = define(
        experiment, overrides or [], grid or [], seeds, trials, name, ["cnnlab", "sweep", *sys.argv[2:]]
    )
    folder = run_sweep(definition, sweeps_dir, storage, workers, data_root(data_dir), stale_after, threads=threads)
    if not worker:
        analysis = analyse([folder])
        report = write_sweep_report(analysis, folder)
        print_output(to_text(comparison_blocks(analysis.comparison)))
        print(f"report: {report['html']}")
    print(folder)


@app.command()
def compare(
    paths: List[Path] = typer.Argument(..., help="a sweep folder, or run folders (or folders that hold run folders)"),
    metric: Optional[List[str]] = typer.Option(
        None,
        "--metric",
        help="metrics to compare (repeat, or comma-separate): "
        "per-epoch ones (val_acc, test_acc, val_loss, train_loss, ...) or numbers "
        "of summary.json by dotted key (sparsity.total.share_below); default: "
        "the task's final metrics (training and validation loss and accuracy "
        "at the last epoch, test accuracy at the best checkpoint)",
    ),
    by: Optional[List[str]] = typer.Option(
        None,
        "--by",
        help="group runs by these config keys (repeat, or "
        "comma-separate); default: the sweep's grid, else every key that differs",
    ),
    output: str = typer.Option("table", "--format", help="table or json"),
    alpha: float = typer.Option(0.05, "--alpha", help="significance level of the tests"),
    stat: str = typer.Option(
        "final",
        "--stat",
        help="for --metric: final (last epoch) or best (epoch of the best checkpoint, by train.monitor)",
    ),
    log_x: bool = typer.Option(False, "--log-x", help="log-scale epochs in the band plots"),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        help="where compare.json, the figures and the report go (default: comparisons/<sweep or experiment names>)",
    ),
):
    """One table of the final metrics per variant (mean ± std over seeds), then per metric n, mean, std, min,
    max and 95% CI, and the z-score with its test for every pair in words; band plots and a report in a folder of
    its own."""
    from cnnlab.api import compare as compare_job
    from cnnlab.document import to_text
    from cnnlab.report.compare_blocks import comparison_blocks

    if output not in ("table", "json"):
        raise CnnlabError(f"--format must be table or json (got {output})")

    def split(texts):
        return [k.strip() for text in texts or [] for k in text.split(",") if k.strip()] or None

    comparison = compare_job(paths, split(metric), split(by), alpha, stat)
    written = comparison.write_report(out, log_x)
    analysis = comparison.analysis
    if output == "json":
        print(json.dumps(analysis.comparison.to_dict(), indent=2))
        err.print(f"report: {escape(str(written['html']))}", highlight=False)
    else:
        print_output(to_text(comparison_blocks(analysis.comparison)))
        print(f"report: {written['html']}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="a run folder or a sweep folder"),
    formats: Optional[List[str]] = typer.Option(
        None,
        "--format",
        "-f",
        help="html | md | latex | pdf (repeat for "
        "several; default html and md): pdf prints the HTML report with "
        "headless Chromium; latex writes latex/ with \\input-able tables",
    ),
):
    """(Re)write the report of a run or a sweep from its folder, in the formats asked for; prints each file."""
    from cnnlab.api import write_report

    for path in write_report(
        run_dir, tuple(f for text in formats or ["html", "md"] for f in text.split(",") if f)
    ).values():
        print(path)


@app.command()
def experiments():
    """List the experiments `cnnlab run NAME` knows: yours in ./experiments first, then the built-in ones."""
    from cnnlab.experiment_files import experiment_description, experiments_dir, known_experiments

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
        table.add_row(
            escape(entry.name), "x".join(map(str, entry.input)), hyper, escape(entry.doc)
        )  # '[conv-NF, ...]' is text, not markup
    Console().print(table)


MODEL_ARG = typer.Argument(
    ...,
    help="a zoo name (colour_cnn), a spec file or inline spec ('conv 8 k3 -> ...'), "
    "an experiment, a torchvision model (resnet18), or your own nn.Module class or "
    "factory (mynet.py:Net, mypackage.nets:Net)",
)
MODEL_ARGS = typer.Argument(
    None,
    help="NAME=VALUE for the model's named hyper-parameters, e.g. NF=32 NC=24 k=3 "
    "(your own module's keyword arguments, e.g. width=16 classes=10)",
)
INPUT = typer.Option(
    None,
    "--input",
    "-i",
    help="input CxHxW, e.g. 3x32x32 (default: the model's own); "
    "names allowed (1xHxW) for --symbolic or with --set H=32",
)


def print_output(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


SUMMARY_COLUMNS = typer.Option(
    None,
    "--columns",
    help="comma-separated columns (name, type, input_shape, output_shape, weights, biases, params, "
    "trainable_params, frozen_params, buffers, macs, bias_adds, activation_bytes)",
)
SUMMARY_SETS = typer.Option(
    None,
    "--set",
    help="NAME=VALUE, repeatable: a value for a name of the model or the input; with --symbolic the formulas are "
    "evaluated",
)
SUMMARY_MEASURE = typer.Option(
    None,
    "--measure/--no-measure",
    help="run a real training step to measure its peak memory (default: when it is cheap)",
)
SUMMARY_PEERS = typer.Option(
    None,
    "--as",
    help="torchinfo | fvcore | keras (repeatable): the figures that tool prints for this network, and how they "
    "follow from cnnlab's",
)


@app.command()
def summary(
    model: str = MODEL_ARG,
    args: Optional[List[str]] = MODEL_ARGS,
    input: Optional[str] = INPUT,
    fmt: str = typer.Option("table", "--format", "-f", help="table | markdown | latex | json"),
    columns: Optional[str] = SUMMARY_COLUMNS,
    sets: Optional[List[str]] = SUMMARY_SETS,
    symbolic: bool = typer.Option(False, "--symbolic", help="formulas in the spec's names and the input H, W"),
    scale: Optional[float] = typer.Option(None, "--scale", help="what-if: input height and width times this"),
    separable: bool = typer.Option(False, "--separable", help="what-if: k x k convolutions made depthwise separable"),
    no_bn: bool = typer.Option(False, "--no-bn", help="what-if: without batch norm"),
    explain: bool = typer.Option(False, "--explain", help="the shape arithmetic of every layer"),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="batch size of the training-step memory"),
    optimizer: Optional[str] = typer.Option(
        None, "--optimizer", help="sgd | momentum | adam | adamw (default: the experiment's, else SGD with momentum)"
    ),
    measure: Optional[bool] = SUMMARY_MEASURE,
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda, for the measured step"),
    csv_file: Optional[Path] = typer.Option(
        None, "--csv", help="also write the per-layer table (all columns) to this CSV file"
    ),
    peers: Optional[List[str]] = SUMMARY_PEERS,
    data_dir: Optional[str] = DATA_DIR,
):
    """Per-layer costs of a network: shapes, weights, biases, buffers, MACs, activation memory; totals; training memory.

    The table fits the terminal's width (columns left out are named under it); --format markdown keeps them all."""

    from cnnlab.api import count

    if fmt not in ("table", "markdown", "latex", "json"):
        raise CnnlabError(f"--format {fmt}: choose table, markdown, latex or json")
    what_if = dict(symbolic=symbolic, scale=scale, separable=separable, no_bn=no_bn, explain=explain)
    step = dict(measure=measure, batch_size=batch_size, optimizer=optimizer, device=device)
    result = count(model, input, (args or []) + (sets or []), data_dir, peers=peers or [], **what_if, **step)
    cols = [c.strip() for c in columns.split(",")] if columns else None
    if csv_file is not None:
        if not csv_file.parent.is_dir():
            raise CnnlabError(
                f"--csv {csv_file}: the folder {csv_file.parent} does not exist; create it first or name "
                "a file in a folder that does"
            )
        write_text(csv_file, result.to_csv(cols))
    if fmt == "json":
        print_output(json.dumps(result.to_dict(), indent=2))
    else:
        print_output(result.render(fmt, cols))


@app.command()
def layers(
    model: str = typer.Argument(
        ...,
        help="a zoo name, a spec (file or inline), an experiment, a run folder, a "
        "torchvision model (resnet18) or your own module (mynet.py:Net)",
    ),
    args: Optional[List[str]] = MODEL_ARGS,
    input: Optional[str] = typer.Option(
        None, "--input", "-i", help="input CxHxW, e.g. 3x256x256 (default: the model's own)"
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    data_dir: Optional[str] = DATA_DIR,
):
    """Every module by the name `cnnlab explain --layer` takes, its type and output shape, in order of execution;
    convolutions marked, and the convolutions that `first` and `last` stand for."""

    from cnnlab.analysis.network_summary import concrete, subject_and_input
    from cnnlab.explain.layer_listing import list_layers

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
    held = (
        f" (the module that holds {listing.last_conv}, the last Conv2d executed, and ends with its map)"
        if listing.last != listing.last_conv
        else ""
    )
    print(f"last convolution (--layer last): {listing.last}{held}")


@app.command()
def explain(
    run_dir: Path = typer.Argument(..., help="a classification run folder made by `cnnlab run`"),
    image: Optional[Path] = typer.Option(
        None, "--image", help="an image file to explain (resized to the model's input, normalised as the run's data)"
    ),
    split: Optional[str] = typer.Option(
        None, "--split", help="train | val | test: take the image from this split (default test)"
    ),
    index: Optional[int] = typer.Option(None, "--index", help="the example's index in --split (default 0)"),
    layer: Optional[List[str]] = typer.Option(
        None,
        "--layer",
        help="a layer whose activations to show (repeat; names as `cnnlab layers` lists them; default: first and last)",
    ),
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

    from cnnlab.analysis.finetune import finetune_blocks, finetune_cost
    from cnnlab.document import render
    from cnnlab.analysis.network_summary import concrete, subject_and_input
    from cnnlab.device import pick_device
    from cnnlab.optimizers import OPTIMIZERS

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
        if not isinstance(e, CnnlabError) and read_only(e):  # any command, any file: one message
            e = cannot_write(read_only(e))
        if debug or not (isinstance(e, CnnlabError) or lost):
            raise
        message = (
            f"another process of this run stopped or cannot be reached ({type(e).__name__}); see its own messages"
            if lost
            else str(e)
        )
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
