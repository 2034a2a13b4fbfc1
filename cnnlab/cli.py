"""The `cnnlab` command: run, resume, report, data, zoo.

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
