"""Real training runs on slices of Fashion-MNIST: the run folder, resume after kill -9, failures."""

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnlab.engine import checkpoint
from cnnlab.engine.trainer import Progress
from cnnlab.errors import CnnlabError
from cnnlab.metrics import TIMING_KEYS
from cnnlab.runfolder import RunFolder
from cnnlab.runner import start_run
from tests.conftest import first_epoch_done, quick_config

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def test_run_folder_contents(data_root, tmp_path):
    cfg = quick_config(train={"epochs": 2}, schedule={"name": "cosine"})
    run = start_run(cfg, tmp_path, data_root)
    assert run.path.parent == tmp_path / "test"
    rows = run.metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in (
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
        "seconds",
        "images_per_s",
        "peak_mem_mb",
        "lr",
    ):
        assert key in rows[0]
    summary = run.summary().to_dict()
    assert summary["status"] == "completed" and summary["seed"] == 0 and summary["device"] == "cpu"
    assert summary["final"] == rows[-1]
    assert summary["params"] == sum(r["params"] for r in run.architecture())
    best = max(rows, key=lambda r: r["val_acc"])
    assert summary["best_epoch"] == best["epoch"] and summary["test_acc_at_best"] == best["test_acc"]
    assert summary["wall_seconds"] > 0
    # the loss before training is that of an untrained model: about ln(10)
    assert summary["expected_initial_loss"] == pytest.approx(math.log(10))
    assert abs(summary["initial_loss"] - math.log(10)) < 0.15 and summary["initial_loss_ok"]
    assert rows[-1]["val_acc"] > 0.5  # 540 images, 2 epochs: well above chance (0.1)
    # checkpoints load as weights only, and best.pt holds the best epoch's weights
    last = checkpoint.load(run.last_path)
    assert last["state"]["epoch"] == 2 and len(last["state"]["history"]) == 2
    assert checkpoint.load(run.best_path)["epoch"] == best["epoch"]
    # the resolved config repeats the run
    assert run.config() == cfg
    html = (run.path / "report.html").read_text()
    # 2 curves, then the best checkpoint's filters, 2 activations, Grad-CAM, confusion and most-confused examples
    assert (
        html.count("data:image/png;base64,") == 6
        and html.count("data:image/svg+xml;base64,") == 2
        and "test accuracy at best validation accuracy" in html
    )
    assert (run.path / "report.md").exists() and (run.figures / "loss.png").exists()


def weights_l1(run) -> float:
    """Sum of |w| over the convolution and dense weights (the tensors of 2 or more dimensions)
    of the last checkpoint."""
    return sum(t.abs().sum().item() for t in checkpoint.load(run.last_path)["model"].values() if t.dim() > 1)


@pytest.mark.slow
def test_label_smoothing_l1_and_schedules_train(data_root, tmp_path):
    """Each option against the same deterministic run without it: ignoring an option would repeat that run exactly."""
    sgd = {"name": "sgd", "lr": 0.05, "nesterov": True, "weight_decay": 5e-4}
    common = {
        "schedule": {"name": "step", "step_epochs": 1},
        "optim": sgd,
        "train": {"epochs": 2},
        "model": {"name": "simplenn", "dropout": 0.2},
        "deterministic": True,
    }
    runs = {}
    for label, change in [
        ("plain", {}),
        ("l1", {"optim": {**sgd, "l1": 2e-3}}),
        ("smoothing", {"train": {"epochs": 2, "label_smoothing": 0.3}}),
        (
            "onecycle",
            {
                "schedule": {"name": "onecycle"},
                "optim": {**sgd, "l1": 1e-5},
                "train": {"epochs": 2, "label_smoothing": 0.1},
            },
        ),
    ]:
        run = start_run(quick_config(**{**common, **change}), tmp_path / label, data_root)
        assert run.summary().to_dict()["status"] == "completed" and all(
            math.isfinite(r["train_loss"]) for r in run.metrics()
        )
        runs[label] = run
    plain, smoothed = runs["plain"].metrics(), runs["smoothing"].metrics()
    assert [r["lr"] for r in plain] == pytest.approx([0.05, 0.05 * 0.1])  # step: x gamma after each epoch
    # L1 pulls the weights towards zero: about 13% less total |w| after 2 epochs at l1 = 0.002
    assert weights_l1(runs["l1"]) < 0.95 * weights_l1(runs["plain"])
    # the smoothed loss adds eps * (mean over classes of -log p - cross-entropy), which grows as the model learns
    assert smoothed[1]["train_loss"] > plain[1]["train_loss"] + 0.1
    onecycle = [r["lr"] for r in runs["onecycle"].metrics()]
    assert 0.05 > onecycle[0] > onecycle[1] >= 0  # past its peak after the warm-up quarter, then down to the floor


def test_nan_loss_fails_the_run_and_keeps_last_good_checkpoint(data_root, tmp_path):
    cfg = quick_config(train={"epochs": 3})

    def poison(row):  # after epoch 1 is saved, break the weights: epoch 2's loss is NaN
        if row["epoch"] == 1:
            model = trainer_models[-1]
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    trainer_models = []
    from cnnlab.engine import trainer as trainer_mod

    original_init = trainer_mod.Trainer.__init__

    def spy_init(self, *a, **k):
        original_init(self, *a, **k)
        trainer_models.append(self.built.model)

    trainer_mod.Trainer.__init__ = spy_init
    try:
        with pytest.raises(CnnlabError, match="NaN or infinite in epoch 2"):
            start_run(cfg, tmp_path, data_root, Progress(epoch_end=poison))
    finally:
        trainer_mod.Trainer.__init__ = original_init
    run = RunFolder(next((tmp_path / "test").iterdir()))
    summary = run.summary().to_dict()
    assert summary["status"] == "failed" and "epoch 2" in summary["error"] and summary["epochs_done"] == 1
    last = checkpoint.load(run.last_path)
    assert last["state"]["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert (run.path / "report.html").exists()


@pytest.mark.slow
def test_resume_after_kill_9_equals_uninterrupted_run(data_root, tmp_path):
    overrides = [
        "deterministic=true",
        "train.epochs=3",
        "data.train_subset=6000",
        "model.dropout=0.3",
        "data.augment.flip=true",
        "data.augment.crop_padding=2",
        "schedule.name=onecycle",
        "data.test_subset=200",
        "data.val_fraction=0.2",
        "train.batch_size=64",
    ]
    cmd = [sys.executable, "-m", "cnnlab.cli", "run", "quickstart", *overrides, "--runs-dir", str(tmp_path / "killed")]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = first_epoch_done(tmp_path / "killed", proc)
    proc.send_signal(signal.SIGKILL)  # at once: in epoch 2 (an epoch takes far longer than a poll of 0.05 s)
    proc.wait()
    assert run_dir is not None, proc.stdout.read()
    assert RunFolder(run_dir).summary().to_dict()["status"] == "running"
    assert len(RunFolder(run_dir).metrics()) < 3
    resumed = subprocess.run(
        [sys.executable, "-m", "cnnlab.cli", "resume", str(run_dir)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip().splitlines()[-1] == str(run_dir)
    straight = subprocess.run(
        [sys.executable, "-m", "cnnlab.cli", "run", "quickstart", *overrides, "--runs-dir", str(tmp_path / "straight")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert straight.returncode == 0, straight.stderr
    a, b = RunFolder(run_dir), RunFolder(Path(straight.stdout.strip().splitlines()[-1]))
    assert a.summary().to_dict()["status"] == "completed"
    assert without_timing(a.metrics()) == without_timing(b.metrics())
    wa, wb = checkpoint.load(a.last_path)["model"], checkpoint.load(b.last_path)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_cli_config_error_is_one_message_and_makes_no_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab.cli", "run", "quickstart", "optim.lrr=0.1", "--runs-dir", str(tmp_path)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "unknown key 'optim.lrr'" in result.stderr and "quickstart.yaml" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


def test_cli_missing_data_makes_no_folder(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnlab.cli",
            "run",
            "table1-cifar10",
            "--data-dir",
            str(tmp_path / "empty"),
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "cifar10 was not found" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("config.yaml"))


def test_cli_says_what_it_decodes_once(data_root, tmp_path):
    """Not a terminal (a log): the first run on a dataset names what it decodes in one line, a later run nothing."""
    from tests.test_data import write_pets

    pets = write_pets(data_root, tmp_path / "pets", {"train": 4, "test": 2})
    experiment = tmp_path / "pets.yaml"
    experiment.write_text(
        f"data: {{dataset: imagefolder, path: {pets}, val_fraction: 0.25}}\nmodel: {{name: simplenn}}\n"
        "train: {epochs: 1, batch_size: 4}\n"
    )
    command = [sys.executable, "-m", "cnnlab.cli", "run", str(experiment), "--runs-dir", str(tmp_path / "runs")]
    env = {**ENV, "CNNLAB_CACHE": str(tmp_path / "cache")}
    first, again = (subprocess.run(command, env=env, capture_output=True, text=True) for _ in range(2))
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    said = [line for line in first.stdout.splitlines() if line.startswith("decoding")]
    assert said == [f"decoding 12 images in {pets} (first run only)"]
    assert "decoding" not in again.stdout


def test_decode_bar_in_a_terminal_takes_phase_after_phase(capsys, monkeypatch):
    """Extraction then decoding, the end of each told twice (as an archive's last bytes may be): a bar each."""
    from cnnlab.console import DecodeBar

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    bar = DecodeBar()
    for what, total in (("extracting pets.tar.gz into /cache", 300), ("decoding 12 images in /cache/pets", 12)):
        for done in (0, total // 2, total, total):
            bar(done, total, what)
    out = capsys.readouterr().out
    assert (
        out.count("extracting pets.tar.gz into /cache\n") == 1 and out.count("decoding 12 images in /cache/pets\n") == 1
    )
    assert "100%" in out


def test_cli_data_list(data_root):
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab.cli", "data", "list", "--data-dir", str(data_root)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert any("cifar10-jpeg.tar.gz" in line and "yes, used" in line for line in lines)
    assert any("cifar-10-batches-py" in line and " no " in line for line in lines)
    assert any("fashion-mnist" in line and "yes, used" in line for line in lines)


def test_initial_loss_17_percent_below_ln_k_is_a_mistake():
    """Outputs independent of the labels average at least ln K: a loss well below it is no longer 'as expected'."""
    from cnnlab.engine.run_record import initial_loss_ok, initial_loss_verdict

    expected = math.log(10)
    assert not initial_loss_ok(0.83 * expected, expected)
    assert initial_loss_verdict(0.83 * expected, expected) == "lower than expected"
    assert initial_loss_verdict(1.2 * expected, expected) == "higher than expected"
    assert {initial_loss_verdict(f * expected, expected) for f in (0.99, 1.01, 1.05)} == {"as expected"}
