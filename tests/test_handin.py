"""Results a student hands in: one table of the final metrics of several runs, the same numbers in every format,
a PDF with no clipped table (text extracted with poppler's pdftotext), LaTeX that compiles with pdflatex, and
records that name the cnnlab version that made them."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import cnnlab
from cnnlab.document import render
from cnnlab.records import Comparison, RunSummary
from cnnlab.report.compare_blocks import comparison_blocks
from cnnlab.runner import start_run
from cnnlab.version import version
from tests.conftest import quick_config

FIVE = (
    "training loss (last epoch)",
    "training accuracy (last epoch)",
    "validation loss (last epoch)",
    "validation accuracy (last epoch)",
    "test accuracy (best checkpoint)",
)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run scripts/install-system-packages.sh")
    return path


@pytest.fixture(scope="module")
def two_runs(data_root, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    a = start_run(quick_config(name="table1", train={"epochs": 2}), runs, data_root)
    b = start_run(
        quick_config(name="simplenn", optim={"name": "sgd", "lr": 0.05}, train={"epochs": 2}), runs, data_root
    )
    return a.path, b.path


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """The command line in a terminal 300 columns wide, so that no header folds."""
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "300"},
    )


def test_compare_two_runs_prints_the_five_final_metrics_in_one_table(two_runs, tmp_path):
    done = cli("compare", *two_runs, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("\n\n")[0]  # the first block: the overview
    assert "Final metrics (mean ± std over seeds)" in table
    for header in FIVE:
        assert header in table
    summaries = [RunSummary.read(p / "summary.json") for p in two_runs]
    for s in summaries:  # each run's own final values, as recorded
        assert f"{s.final['train_loss']:.4f}" in table and f"{s.at('test_acc'):.4f}" in table
    out = tmp_path / "comparisons" / "table1-vs-simplenn"
    assert (out / "report.html").exists() and (out / "compare.json").exists()


def test_one_comparison_carries_the_same_numbers_in_every_format(two_runs, tmp_path):
    compared = cnnlab.compare(list(two_runs))
    written = compared.write_report(tmp_path / "cmp", formats=("html", "md", "latex"))
    c = Comparison.read(tmp_path / "cmp" / "compare.json")
    assert c == compared.record and c.provenance.cnnlab_version == version()
    numbers = {f"{s.mean:.4f}" for col in c.columns for v in col.variants for s in [col.of(v)]}
    assert len(numbers) >= 8
    blocks = comparison_blocks(c)
    texts = {fmt: render(blocks, fmt) for fmt in ("table", "markdown", "latex", "html")}
    texts["report.html"] = written["html"].read_text()
    texts["report.md"] = written["md"].read_text()
    texts["latex tables"] = "".join(p.read_text() for p in (tmp_path / "cmp" / "latex" / "tables").glob("*.tex"))
    for fmt, text in texts.items():
        missing = [n for n in numbers if n not in text]
        assert not missing, f"{fmt} lacks {missing}"


def test_runs_of_different_tasks_are_not_compared(two_runs, data_root, tmp_path):
    seg = start_run(
        quick_config(
            name="seg",
            task="segment",
            model={"name": "seg_unet", "args": {"NF": 4}},
            data={
                "dataset": "pennfudan",
                "image_size": 32,
                "train_subset": None,
                "test_subset": None,
                "val_fraction": 0.2,
            },
            train={"epochs": 1, "batch_size": 16},
        ),
        tmp_path,
        data_root,
    )
    done = cli("compare", two_runs[0], seg.path, cwd=tmp_path)
    assert done.returncode == 2 and "not comparable" in done.stderr and "classify, segment" in done.stderr


def test_pdf_report_holds_every_column_and_the_architecture_total(two_runs):
    run = two_runs[0]
    done = cli("report", run, "--format", "pdf")
    assert done.returncode == 0, done.stderr
    text = subprocess.run(
        [tool("pdftotext"), "-layout", run / "report.pdf", "-"], capture_output=True, text=True
    ).stdout
    words = re.sub(r"\s+", " ", text)
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    from cnnlab import metrics

    for key in [k for k in history[-1] if k != "epoch"]:  # every per-epoch column, by its header's first word
        label = metrics.label(key, unit=key in metrics.EPOCH_METRICS)
        assert label.split()[0] in words, f"{label} is not in the PDF"
    params = sum(r["params"] for r in json.loads((run / "architecture.json").read_text()))
    assert re.search(rf"total {params:,} {params:,} 0 \d+ [\d,]+", words), "the architecture total is clipped"


def test_latex_folder_compiles_with_pdflatex(two_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_runs[1], run)
    done = cli("report", run, "--format", "latex")
    assert done.returncode == 0, done.stderr
    latex = run / "latex"
    tables = sorted(p.name for p in (latex / "tables").glob("*.tex"))
    assert {"final.tex", "architecture.tex", "epochs-metrics.tex", "epochs-timing.tex"} <= set(tables)
    assert all("\\toprule" in (latex / "tables" / t).read_text() for t in tables)
    assert any(p.suffix == ".pdf" for p in (latex / "figures").iterdir())  # vector figures
    built = subprocess.run(
        [tool("pdflatex"), "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=latex,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stdout[-2000:]
    assert (latex / "report.pdf").stat().st_size > 10_000


def test_summary_json_names_the_cnnlab_version(two_runs):
    raw = json.loads((two_runs[0] / "summary.json").read_text())
    assert raw["cnnlab_version"] == version() and raw["schema"] == 1
    html = (two_runs[0] / "report.html").read_text()
    assert f"Made by cnnlab {version()}" in html


def test_a_compare_of_a_sweep_never_writes_over_its_report(two_runs, tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "runs").mkdir(parents=True)
    for p in two_runs:
        shutil.copytree(p, sweep / "runs" / p.name)
    (sweep / "report.html").write_text("the sweep's own report")
    done = cli("compare", sweep, "--metric", "val_loss,val_acc", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (sweep / "report.html").read_text() == "the sweep's own report"
    c = Comparison.read(next((tmp_path / "comparisons").glob("*/compare.json")))
    assert [col.metric for col in c.columns] == ["val_loss", "val_acc"]
