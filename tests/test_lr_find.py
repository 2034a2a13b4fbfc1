"""The learning-rate range test on real data: an exponential ramp, the smoothed loss, a stop on divergence, a
suggestion; the model and optimizer left as they were; `cnnlab lr-find` on simplenn-cifar10 (issue 21.3)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from cnnlab.engine.run_setup import build_run
from cnnlab.engine.lr_find import lr_find
from cnnlab.tuning import find_lr
from tests.conftest import quick_config


def test_the_ramp_smooths_stops_on_divergence_and_restores_the_model(data_root, tmp_path):
    built = build_run(quick_config(optim={"name": "sgd", "lr": 0.01}), data_root)
    model_before = {k: v.clone() for k, v in built.model.state_dict().items()}
    optimizer_before, rng_before = built.optimizer.state_dict(), torch.get_rng_state()  # no momentum buffers yet
    result = lr_find(built, start_lr=1e-5, end_lr=100.0, steps=60)
    assert all(torch.equal(v, model_before[k]) for k, v in built.model.state_dict().items())
    assert built.optimizer.state_dict()["state"] == optimizer_before["state"]
    assert torch.equal(torch.get_rng_state(), rng_before)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert all(r == pytest.approx(10 ** (7 / 59)) for r in ratios)  # exponential: seven decades in 59 steps
    average = 0.0
    for i, (loss, smooth) in enumerate(zip(result.losses, result.smoothed)):
        average = 0.98 * average + 0.02 * loss
        assert smooth == pytest.approx(average / (1 - 0.98 ** (i + 1)))
    assert result.stopped.startswith("diverged at lr") and result.steps < 60  # SGD at lr 100 does not survive
    assert result.smoothed[-1] > 4 * min(result.smoothed) or not math.isfinite(result.losses[-1])
    assert 1e-4 < result.suggestion < result.minimum_lr < 100
    assert math.log(10) * 0.8 < result.smoothed[0] < math.log(10) * 1.2  # an untrained model's ln K


def test_find_lr_writes_the_plot_and_the_record(data_root, tmp_path):
    result = find_lr(quick_config(optim={"name": "adam", "lr": 0.003}), data_root, tmp_path, 1e-6, 1.0, 30)
    record = json.loads((tmp_path / "lr_find.json").read_text())
    assert record["suggestion"] == result.suggestion and record["config"]["optim"]["name"] == "adam"
    assert (tmp_path / "lr_find.png").stat().st_size > 10_000


@pytest.mark.slow
def test_lr_find_on_simplenn_cifar10_suggests_a_rate(data_root, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "lr-find", "simplenn-cifar10", "--out", tmp_path, "--data-dir", data_root],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "lr_find.json").read_text())
    assert record["lrs"][0] == 1e-7 and record["stopped"].startswith("diverged") and 90 <= record["steps"] <= 100
    assert 1e-3 < record["suggestion"] < 1  # measured: 0.115 (SGD with momentum 0.9, batch 128)
    assert f"suggested optim.lr: {record['suggestion']:.3g}" in done.stdout
