"""The `cnnlab` command: run, resume, report, summary, cost, data, zoo.

User errors print as one line of advice (exit code 2); `--debug` anywhere shows the traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cnnlab.errors import CnnlabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="A laboratory for convolutional neural networks: build, count, train, compare, report.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: where they are looked for and whether they are found.")
app.add_typer(data_app, name="data")
cost_app = typer.Typer(no_args_is_help=True, help="Measured costs of training choices (e.g. fine-tuning only the last layer).")
app.add_typer(cost_app, name="cost")
err = Console(stderr=True)

DATA_DIR = typer.Option(None, "--data-dir", help="data root (default: $CNNLAB_DATA, else ~/.cache/cnnlab/data)")


def epoch_line(row: dict, epochs: int) -> str:
    iou = {s: f" iou {row[f'{s}_iou']:.4f}" if f"{s}_iou" in row else "" for s in ("val", "test")}
    return (f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}{iou['val']} | "
            f"test acc {row['test_acc']:.4f}{iou['test']} | {row['seconds']:.1f} s, {row['images_per_s']:,.0f} img/s")


class ConsoleProgress:
    """A live bar per epoch when stdout is a terminal; one printed line per epoch always."""

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.bar = None
        if sys.stdout.isatty():
            self.bar = RichProgress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), transient=True)
        self.task = None

    def hooks(self):
        from cnnlab.engine.trainer import Progress

        return Progress(epoch_start=self.epoch_start, step=self.step, epoch_end=self.epoch_end, message=self.message)

    def epoch_start(self, epoch: int, batches: int) -> None:
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task("train", total=batches, epoch=f"{epoch}/{self.epochs}")

    def step(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def epoch_end(self, row: dict) -> None:
        if self.bar is not None:
            self.bar.remove_task(self.task)
            self.bar.stop()
        print(epoch_line(row, self.epochs), flush=True)

    def message(self, text: str) -> None:
        print(text, flush=True)


@app.command()
def run(
    experiment: str = typer.Argument(..., help="a name from experiments/ or a path to a YAML file"),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. train.epochs=2 optim.lr=0.01"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="where run folders go"),
    data_dir: Optional[str] = DATA_DIR,
    download: bool = typer.Option(False, "--download", help="download the dataset through torchvision if it is missing"),
):
    """Train one experiment into a new run folder, ending with its report; prints the folder last."""
    from cnnlab.config import load_experiment
    from cnnlab.data.root import data_root
    from cnnlab.data.sources import download as fetch
    from cnnlab.runner import start_run

    cfg = load_experiment(experiment, overrides or [])
    root = data_root(data_dir)
    if download:
        fetch(cfg.data.dataset, root)
    run_folder = start_run(cfg, runs_dir, root, ConsoleProgress(cfg.train.epochs).hooks())
    print(run_folder.path)


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
    """Continue a stopped run from its last checkpoint."""
    from cnnlab.data.root import data_root
    from cnnlab.runfolder import RunFolder
    from cnnlab.runner import resume_run

    epochs = RunFolder.open(run_dir).config().train.epochs
    run_folder = resume_run(run_dir, data_root(data_dir), ConsoleProgress(epochs).hooks())
    print(run_folder.path)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run folder")):
    """(Re)write a run's report.html and report.md from its folder."""
    from cnnlab.report.run_report import write_run_report

    print(write_run_report(run_dir))


@app.command()
def zoo():
    """List the zoo's models with their default input and hyper-parameters."""
    from cnnlab.models.zoo import ZOO

    table = Table("name", "input", "hyper-parameters", "about")
    for entry in ZOO.values():
        hyper = " ".join(f"{k}={v}" for k, v in entry.hyper.items())
        table.add_row(entry.name, "x".join(map(str, entry.input)), hyper, entry.doc)
    Console().print(table)


MODEL_ARG = typer.Argument(..., help="a zoo name (colour_cnn), a spec file or inline spec ('conv 8 k3 -> ...'), "
                                     "an experiment, or a torchvision model (resnet18)")
MODEL_ARGS = typer.Argument(None, help="NAME=VALUE for the model's named hyper-parameters, e.g. NF=32 NC=24 k=3")
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
    data_dir: Optional[str] = DATA_DIR,
):
    """Per-layer costs of a network: shapes, weights, biases, buffers, MACs, activation memory; totals; training memory."""
    import json

    from cnnlab.analysis.render import render, to_csv
    from cnnlab.analysis.summary import Options, document, main_table, subject_and_input, summarise, summary_json
    from cnnlab.analysis.training import OPTIMIZERS
    from cnnlab.analysis.whatif import WhatIf

    if fmt not in ("table", "markdown", "latex", "json"):
        raise CnnlabError(f"--format {fmt}: choose table, markdown, latex or json")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise CnnlabError(f"--optimizer {optimizer}: choose {', '.join(OPTIMIZERS)}")
    subject, in_shape, given = subject_and_input(model, (args or []) + (sets or []), input, symbolic, data_dir)
    opts = Options(symbolic=symbolic, given=given, whatif=WhatIf(scale, separable, no_bn), explain=explain,
                   batch_size=batch_size, optimizer=optimizer, measure=measure, device=device)
    result = summarise(subject, in_shape, opts)
    cols = [c.strip() for c in columns.split(",")] if columns else None
    if csv_file is not None:
        csv_file.write_text(to_csv(main_table(result, cols)), encoding="utf-8")
    if fmt == "json":
        print_output(json.dumps(summary_json(result), indent=2))
    else:
        print_output(render(document(result, cols), fmt))


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
    from cnnlab.analysis.summary import concrete, pick_device, subject_and_input
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
    from cnnlab.config import DATASETS
    from cnnlab.data.root import data_root
    from cnnlab.data.sources import candidates

    root = data_root(data_dir)
    print(f"data root: {root}")
    table = Table("dataset", "looked for", "kind", "found")
    for name in DATASETS:
        if name in ("idx", "imagefolder"):
            table.add_row(name, "data.path (any folder or archive)", "", "-")
            continue
        used = False
        for i, c in enumerate(candidates(name, root)):
            found = "no"
            if c.exists():
                found, used = ("yes" if used else "yes, used"), True
            table.add_row(name if i == 0 else "", str(c.path), c.kind, found)
    Console(width=160).print(table)


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    args = [a for a in sys.argv[1:] if a != "--debug"]
    try:
        app(args=args, prog_name="cnnlab")  # exits itself; usage errors are shown by typer
    except CnnlabError as e:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)

if __name__ == "__main__":
    main()
