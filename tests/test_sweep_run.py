"""Real sweeps on a slice of Fashion-MNIST through the command line: workers, resume after kill -9,
PostgreSQL shared by two "machines", an Optuna search with pruning; compare and reports from run folders."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import yaml

from cnnlab.metrics import TIMING_KEYS

pytestmark = pytest.mark.slow  # every test here runs real sweeps through the command line

TINY = {
    "data": {"dataset": "fashion_mnist", "train_subset": 400, "test_subset": 100, "val_fraction": 0.25},
    "model": {"name": "simplenn"},
    "optim": {"name": "adam", "lr": 0.003},
    "train": {"epochs": 2, "batch_size": 64, "eval_batch_size": 256},
}


def experiment(tmp_path: Path, **sections) -> Path:
    raw = {**TINY, **sections}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def cnnlab(
    *args, cwd: Path, data_root: Path, check: bool = True, background: bool = False, threads: Optional[int] = None
):
    """Run the cnnlab command; `threads` sets OMP_NUM_THREADS (a run's numbers depend on its thread count)."""
    cmd = [sys.executable, "-m", "cnnlab.cli", *map(str, args)] + (
        ["--data-dir", str(data_root)] if args[0] in ("sweep", "run") else []
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    if background:
        return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    if check and done.returncode != 0:
        pytest.fail(f"cnnlab {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def events(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


def starts(folder: Path) -> collections.Counter:
    return collections.Counter(e["cell"] for e in events(folder) if e["event"] in ("start", "resume"))


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory, data_root):
    """2 optimizers x 2 seeds with 2 workers on the default SQLite storage."""
    tmp = tmp_path_factory.mktemp("grid")
    exp = experiment(tmp)
    done = cnnlab(
        "sweep", exp, "--grid", "optim.name=sgd,adam", "--seeds", "2", "--workers", "2", cwd=tmp, data_root=data_root
    )
    return tmp, exp, tmp / done.stdout.strip().splitlines()[-1], done.stdout


def test_grid_sweep_runs_every_cell_once_as_run_folders(grid_sweep):
    tmp, exp, folder, stdout = grid_sweep
    assert folder.parent == tmp / "sweeps" and (folder / "study.db").exists()
    cells = [f"optim.name={o}/s{s}" for o in ("sgd", "adam") for s in (0, 1)]
    assert starts(folder) == {c: 1 for c in cells}
    for cell in cells:
        run = folder / "runs" / cell
        assert json.loads((run / "summary.json").read_text())["status"] == "completed"
        assert (run / "report.html").exists() and (run / "checkpoints" / "last.pt").exists()
    assert "by 2 workers with 1 thread each" in stdout


def test_running_a_finished_sweep_again_runs_nothing(grid_sweep, data_root):
    tmp, exp, folder, _ = grid_sweep
    before = len(events(folder))
    done = cnnlab(
        "sweep", exp, "--grid", "optim.name=sgd,adam", "--seeds", "2", "--workers", "2", cwd=tmp, data_root=data_root
    )
    assert "4 done, 0 to run" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == str(folder.relative_to(tmp))
    assert len(events(folder)) == before


def test_compare_json_matches_the_run_folders(grid_sweep, data_root):
    tmp, exp, folder, _ = grid_sweep
    done = cnnlab("compare", folder, "--format", "json", "--metric", "val_acc", cwd=tmp, data_root=data_root)
    (column,) = json.loads(done.stdout)["columns"]
    assert column["metric"] == "val_acc" and [v["name"] for v in column["variants"]] == [
        "optim.name=sgd",
        "optim.name=adam",
    ]
    for v in column["variants"]:
        finals = [json.loads(Path(r, "metrics.jsonl").read_text().splitlines()[-1])["val_acc"] for r in v["runs"]]
        s = v["final"]
        assert s["n"] == 2 and v["config"] == {"optim.name": v["name"].split("=")[1]}
        assert s["mean"] == pytest.approx(np.mean(finals)) and s["std"] == pytest.approx(np.std(finals, ddof=1))
        assert (s["min"], s["max"]) == (min(finals), max(finals)) and len(s["ci95"]) == 2
    (test,) = column["tests"]
    assert {"a", "b", "t", "p_value", "significant"} <= set(test) and test["a"] == "optim.name=sgd"
    own = tmp / "comparisons" / folder.name  # a comparison's own folder; the sweep's report stays the sweep's
    for report_dir in (folder, own):
        html = (report_dir / "report.html").read_text()
        assert html.count("data:image/svg+xml;base64,") >= 4 and "Welch" in html
        for v in column["variants"]:
            for run in v["runs"]:
                link = os.path.relpath(Path(run) / "report.html", report_dir)
                assert f'href="{link}"' in html and (report_dir / link).exists()
        assert (report_dir / "report.md").exists() and (report_dir / "compare.json").exists()


@pytest.mark.slow
def test_compare_a_summary_json_number_of_real_runs(grid_sweep, data_root, tmp_path):
    tmp, exp, folder, _ = grid_sweep
    key = "sparsity.total.share_below"
    done = cnnlab(
        "compare", folder, "--format", "json", "--metric", key, "--out", tmp_path, cwd=tmp, data_root=data_root
    )
    (column,) = json.loads(done.stdout)["columns"]
    assert column["source"] == "summary" and "final and best are the same value" in column["note"]
    for v in column["variants"]:
        shares = [
            json.loads(Path(r, "summary.json").read_text())["sparsity"]["total"]["share_below"] for r in v["runs"]
        ]
        assert v["values"] == shares and v["final"] == v["best"]
    assert key in (tmp_path / "report.html").read_text()


def test_band_plot_from_real_run_folders(grid_sweep):
    from cnnlab.sweep.collect import group, load_runs
    from cnnlab.viz.bands import draw_bands, plot_bands
    from tests.test_viz import x_labels

    _, _, folder, _ = grid_sweep
    runs, _ = load_runs([folder])
    variants = [(v.name, [r.history for r in v.runs]) for v in group(runs)]
    fig = draw_bands(variants, "val_acc")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "validation accuracy"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["optim.name=adam (n=2)", "optim.name=sgd (n=2)"]
    for line, (name, histories) in zip(ax.get_lines(), variants):
        expected = [np.mean([h[e]["val_acc"] for h in histories]) for e in range(2)]
        assert list(line.get_xdata()) == [1, 2] and np.allclose(line.get_ydata(), expected)
    assert len(ax.collections) == 2  # one min-max band per variant
    assert x_labels(fig) == (["1", "2"], [])  # whole epochs
    png = plot_bands(variants, "val_loss", folder / "check" / "band.png", log_x=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_and_validation_of_every_variant_in_one_figure(grid_sweep):
    """The study's "transfer model's and best own model's train and validation losses in one plot": each variant's
    training curve dashed and validation curve solid, in the variant's colour, means over its seeds."""
    from cnnlab.sweep.collect import group, load_runs
    from cnnlab.viz.bands import draw_train_val

    _, _, folder, _ = grid_sweep
    runs, _ = load_runs([folder])
    variants = [(v.name, [r.history for r in v.runs]) for v in group(runs)]
    ax = draw_train_val(variants, "loss").axes[0]
    assert (
        ax.get_ylabel() == "loss (cross-entropy, nats)" and "training (dashed) and validation (solid)" in ax.get_title()
    )
    lines = ax.get_lines()
    # one legend entry a variant (its colour), then one a line style, so that many variants stay legible
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"{name} (n=2)" for name, _ in variants] + [
        "training",
        "validation",
    ]
    for i, (name, histories) in enumerate(variants):
        for line, key, style in zip(lines[2 * i : 2 * i + 2], ("train_loss", "val_loss"), ("--", "-")):
            expected = [np.mean([h[e][key] for h in histories]) for e in range(2)]
            assert np.allclose(line.get_ydata(), expected) and line.get_linestyle() == style
            assert line.get_color() == lines[2 * i].get_color()
    assert (folder / "figures" / "train-val-loss.png").exists()  # the sweep's report draws it
    assert "loss (cross-entropy, nats): training and validation" in (folder / "report.html").read_text()


@pytest.fixture(scope="module")
def batch_size_sweep(tmp_path_factory, data_root):
    """A numeric axis spanning a decade: batch sizes 25 and 250, 2 seeds, one epoch each."""
    tmp = tmp_path_factory.mktemp("batch")
    exp = experiment(tmp, train={**TINY["train"], "epochs": 1})
    done = cnnlab("sweep", exp, "--grid", "train.batch_size=25,250", "--seeds", "2", cwd=tmp, data_root=data_root)
    return tmp / done.stdout.strip().splitlines()[-1]


def test_numeric_grid_key_gets_the_metric_against_its_values(batch_size_sweep):
    from cnnlab.report.sweep_report import by_value_series
    from cnnlab.sweep.compare import analyse
    from cnnlab.viz.by_value import draw_by_value
    from tests.test_viz import x_labels

    folder = batch_size_sweep
    assert (folder / "figures" / "by-train.batch_size.png").read_bytes()[:4] == b"\x89PNG"
    html = (folder / "report.html").read_text()
    assert "<figcaption>validation accuracy (last epoch) against train.batch_size</figcaption>" in html
    assert (
        "![validation accuracy (last epoch) against train.batch_size](figures/by-train.batch_size.png)"
        in (folder / "report.md").read_text()
    )
    result = analyse([folder]).comparison.headline
    series = by_value_series(result)
    assert list(series) == ["train.batch_size"] and list(series["train.batch_size"]) == [""]  # no other key: one line
    fig = draw_by_value(series["train.batch_size"], "train.batch_size", "val_acc", "final")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and x_labels(fig) == (["25", "250"], [])  # a decade: log-x, plain numbers
    line, _, (bars,) = ax.containers[0].lines
    finals = [v.values for v in result.variants]
    assert list(line.get_xdata()) == [25, 250] and np.allclose(line.get_ydata(), [np.mean(f) for f in finals])
    assert np.allclose([[seg[0][1], seg[1][1]] for seg in bars.get_segments()], [[min(f), max(f)] for f in finals])


def test_no_value_plot_for_a_grid_of_names(grid_sweep):
    from cnnlab.report.sweep_report import by_value_series
    from cnnlab.sweep.compare import analyse

    _, _, folder, _ = grid_sweep
    assert by_value_series(analyse([folder]).comparison.headline) == {}
    assert not list((folder / "figures").glob("by-*")) and " against " not in (folder / "report.html").read_text()


def test_sigterm_to_the_sweep_stops_its_workers_and_the_same_command_continues(tmp_path, data_root):
    """SIGTERM (a batch scheduler, `docker stop`) reaches the launcher alone: it passes it on, the running cell's
    run is recorded stopped, no worker is left behind, and the sweep exits 143 saying how to continue."""
    exp = experiment(tmp_path, train={**TINY["train"], "epochs": 3}, data={**TINY["data"], "train_subset": 3000})
    args = ("sweep", exp, "--grid", "optim.lr=0.001,0.002", "--seeds", "1", "--threads", "1")
    proc = cnnlab(*args, cwd=tmp_path, data_root=data_root, background=True)

    def metrics():
        return list((tmp_path / "sweeps").glob("*/runs/optim.lr=0.001/s0/metrics.jsonl"))

    deadline = time.time() + 120
    while not (metrics() and metrics()[0].read_text().count("\n") >= 1):  # the first cell is in its epoch 2
        assert time.time() < deadline and proc.poll() is None, (
            proc.stdout.read() if proc.poll() is not None else "timeout"
        )
        time.sleep(0.05)
    folder = metrics()[0].parents[3]
    worker = next(e["pid"] for e in events(folder) if e["cell"] == "optim.lr=0.001/s0")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 143, out
    assert "the sweep was stopped by SIGTERM; run the same command again to continue" in out
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)  # the worker is gone, not orphaned
    summary = json.loads((folder / "runs/optim.lr=0.001/s0/summary.json").read_text())
    assert (summary["status"], summary["stopped_by"]) == ("stopped", "SIGTERM")
    done = cnnlab(*args, cwd=tmp_path, data_root=data_root)
    assert "0 done, 2 to run" in done.stdout and "all 2 done" in done.stdout
    assert [r["epoch"] for r in map(json.loads, metrics()[0].read_text().splitlines())] == [1, 2, 3]


def test_killed_worker_resumes_only_the_missing_cells(tmp_path, data_root):
    exp = experiment(
        tmp_path, train={**TINY["train"], "epochs": 3}, deterministic=True, data={**TINY["data"], "train_subset": 3000}
    )
    args = ("sweep", exp, "--grid", "optim.lr=0.001,0.002,0.003", "--seeds", "1", "--threads", "1")
    proc = cnnlab(*args, cwd=tmp_path, data_root=data_root, background=True)

    def folders():
        return list((tmp_path / "sweeps").glob("*/events.jsonl"))

    deadline = time.time() + 120
    victim = None
    while victim is None:  # kill the worker when the second cell is half-way
        assert time.time() < deadline and proc.poll() is None, (
            proc.stdout.read() if proc.poll() is not None else "timeout"
        )
        time.sleep(0.05)
        if folders():
            folder = folders()[0].parent
            metrics = folder / "runs" / "optim.lr=0.002" / "s0" / "metrics.jsonl"
            if metrics.exists() and 1 <= len(metrics.read_text().splitlines()) < 3:
                victim = next(e["pid"] for e in events(folder) if e["cell"] == "optim.lr=0.002/s0")
    os.kill(victim, signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "killed by signal 9" in out and "Run the same command again" in out
    done = cnnlab(*args, cwd=tmp_path, data_root=data_root)
    assert "1 done, 2 to run" in done.stdout
    log = [(e["cell"], e["event"]) for e in events(folder) if e["event"] in ("start", "resume")]
    assert log == [
        ("optim.lr=0.001/s0", "start"),
        ("optim.lr=0.002/s0", "start"),
        ("optim.lr=0.002/s0", "resume"),
        ("optim.lr=0.003/s0", "start"),
    ]
    resumed = [json.loads(line) for line in (folder / "runs/optim.lr=0.002/s0/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    assert sorted(p.name for p in (folder / "runs").iterdir()) == ["optim.lr=0.001", "optim.lr=0.002", "optim.lr=0.003"]
    # the resumed run equals an uninterrupted run of the same config (deterministic: true, CPU, the same thread count)
    cnnlab(
        "run",
        folder / "runs/optim.lr=0.002/s0/config.yaml",
        "--runs-dir",
        tmp_path / "alone",
        cwd=tmp_path,
        data_root=data_root,
        threads=1,
    )
    (alone,) = (tmp_path / "alone").glob("*/*/metrics.jsonl")
    timing = TIMING_KEYS

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in timing} for r in rows]

    assert strip(resumed) == strip([json.loads(line) for line in alone.read_text().splitlines()])


def test_two_machines_share_a_sweep_through_postgresql(tmp_path, data_root, postgres_url):
    """Two `--worker` commands with their own sweep folders (as on two machines) share one PostgreSQL study."""
    exp = experiment(tmp_path, train={**TINY["train"], "epochs": 1})
    args = (
        "sweep",
        exp,
        "--grid",
        "optim.name=sgd,adam",
        "--grid",
        "model.bn=true,false",
        "--seeds",
        "1",
        "--storage",
        postgres_url,
        "--worker",
    )
    machines = [tmp_path / "a", tmp_path / "b"]
    procs = [cnnlab(*args, "--sweeps-dir", m, cwd=tmp_path, data_root=data_root, background=True) for m in machines]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ran = collections.Counter()
    for m in machines:
        (folder,) = m.iterdir()
        ran += starts(folder)
        assert not (folder / "study.db").exists()
    assert ran == {f"optim.name={o},model.bn={b}/s0": 1 for o in ("sgd", "adam") for b in ("true", "false")}
    assert all(sum(starts(next(m.iterdir())).values()) > 0 for m in machines), outs  # both machines worked


def test_optuna_search_with_pruning(tmp_path, data_root):
    import optuna

    search = {
        "params": {
            "optim.lr": {"type": "float", "low": 0.0005, "high": 0.05, "log": True},
            "model.activation": {"type": "categorical", "choices": ["relu", "silu"]},
        },
        "startup_trials": 1,
        "warmup_epochs": 1,
    }
    exp = experiment(tmp_path, search=search, train={**TINY["train"], "epochs": 3})
    done = cnnlab("sweep", exp, "--optuna", "4", "--workers", "2", cwd=tmp_path, data_root=data_root)
    folder = tmp_path / done.stdout.strip().splitlines()[-1]
    assert sorted(p.name for p in (folder / "runs").iterdir()) == [f"trial-{i:03d}" for i in range(4)]
    study = optuna.load_study(study_name=folder.name, storage=f"sqlite:///{folder / 'study.db'}")
    trials = [t for t in study.trials if "cell" in t.user_attrs]
    assert len(trials) == 4 and {t.state for t in trials} <= {
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
    }
    for t in trials:  # the per-epoch validation accuracy reached the pruner, and the run folder has the trial's values
        run = folder / "runs" / t.user_attrs["cell"]
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert t.intermediate_values == {r["epoch"]: r["val_acc"] for r in history}
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert (config["optim"]["lr"], config["model"]["activation"]) == (
            t.params["optim.lr"],
            t.params["model.activation"],
        )
        status = json.loads((run / "summary.json").read_text())["status"]
        assert status == ("pruned" if t.state == optuna.trial.TrialState.PRUNED else "completed")
    assert "Trials, best first" in (folder / "report.html").read_text()
