"""train.log: TensorBoard event files read back with tensorboard's own reader (a run, a resumed run, a sweep's runs
side by side) and metrics.csv, on real Fashion-MNIST slices (issue 21.1)."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from cnnlab.engine.run_setup import build_run
from cnnlab.engine.trainer import Progress
from cnnlab.errors import CnnlabError
from cnnlab.runner import resume_run, start_run
from tests.conftest import quick_config
from tests.test_training_conventions import only_run, stop_after_epoch

ALL = {"images": 0, "scalars": 0, "tensors": 0}  # keep every event


def read_events(path) -> EventAccumulator:
    events = EventAccumulator(str(path), size_guidance=ALL)
    events.Reload()
    return events


def scalars(events: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, round(e.value, 5)) for e in events.Scalars(tag)]


def logged_config():
    return quick_config(deterministic=True, train={"epochs": 3, "log": ["tensorboard", "csv"]})


def test_tensorboard_and_csv_hold_every_epoch_the_config_and_the_figures(data_root, tmp_path):
    run = start_run(logged_config(), tmp_path, data_root)
    rows = run.metrics()
    events = read_events(run.path)
    assert scalars(events, "val/acc") == [(r["epoch"], round(r["val_acc"], 5)) for r in rows]
    assert [e.step for e in events.Scalars("epoch/lr")] == [1, 2, 3] and "train/loss" in events.Tags()["scalars"]
    assert "epoch/train_seconds" in events.Tags()["scalars"]  # a timing, not a split's metric
    assert {"figures/loss", "figures/confusion"} <= set(events.Tags()["images"])
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["optim.lr"].number_value == 0.003 and hparams["model.name"].string_value == "simplenn"
    assert "optim:" in events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    with open(run.path / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [float(r["val_loss"]) for r in table] == [r["val_loss"] for r in rows] and table[0]["epoch"] == "1"


def test_a_resumed_runs_tensorboard_log_reads_as_one_uninterrupted_run(data_root, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        start_run(logged_config(), tmp_path, data_root, Progress(epoch_end=stop_after_epoch(2)))
    run = only_run(tmp_path / "test")
    assert [e.step for e in read_events(run.path).Scalars("val/acc")] == [1, 2]
    with SummaryWriter(str(run.path)) as ahead:  # as if a killed process had logged past its last checkpoint
        for step in (2, 3):
            ahead.add_scalar("val/acc", 123.0, step)
    resume_run(run.path, data_root)
    events = read_events(run.path)
    rows = run.metrics()
    assert scalars(events, "val/acc") == [(r["epoch"], round(r["val_acc"], 5)) for r in rows]
    assert len(rows) == 3 and len(events.Tensors("config/text_summary")) == 1


def test_without_tensorboard_one_message_before_a_run_folder_is_made(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "tensorboard" else object())
    with pytest.raises(CnnlabError, match=r"pip install 'cnnlab\[tensorboard\]'"):
        build_run(logged_config(), data_root)


@pytest.mark.slow
def test_a_sweeps_runs_side_by_side_in_tensorboard(data_root, tmp_path):
    raw = quick_config().model_dump(mode="json")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({k: raw[k] for k in ("data", "model", "optim", "train")}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnlab",
            "sweep",
            tmp_path / "tiny.yaml",
            "train.log=[tensorboard]",
            "--grid",
            "optim.name=sgd,adam",
            "--seeds",
            "1",
            "--data-dir",
            data_root,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    sweep = tmp_path / done.stdout.strip().splitlines()[-1]
    board = EventMultiplexer(size_guidance=ALL).AddRunsFromDirectory(str(sweep))  # `tensorboard --logdir SWEEP`
    board.Reload()
    runs = sorted(board.Runs())
    assert len(runs) == 2 and all("runs/" in name for name in runs)
    assert all([e.step for e in board.Scalars(name, "val/acc")] == [1] for name in runs)
