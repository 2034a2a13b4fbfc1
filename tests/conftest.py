"""Shared fixtures: the real data root (tests fail, never skip, when it is missing) and quick configs."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest
import torch

from cnnlab.config import Config, validate

pytest_plugins = ["tests.postgres_server"]  # the real PostgreSQL server fixtures


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = os.environ.get("CNNLAB_DATA")
    if not root or not Path(root).is_dir():
        pytest.fail(
            "set CNNLAB_DATA to the data root (e.g. CNNLAB_DATA=../shared/data make test); the tests use real data"
        )
    return Path(root).resolve()


def first_epoch_done(runs_dir: Path, proc: subprocess.Popen, timeout: float = 120) -> Optional[Path]:
    """The folder of the run that `proc` trains under `runs_dir`, once epoch 1 is on disk (its first metrics.jsonl
    line); None if that does not come within `timeout` s or `proc` ends first. Tests kill -9 runs mid-epoch 2."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        found = list(Path(runs_dir).glob("*/*/metrics.jsonl"))
        if found and found[0].read_text().count("\n") >= 1:
            return found[0].parent
        time.sleep(0.05)
    return None


# the slice quick_config trains on, as command-line overrides of a shipped experiment
QUICK_OVERRIDES = [
    "data.train_subset=600",
    "data.test_subset=200",
    "data.val_fraction=0.2",
    "train.epochs=1",
    "train.batch_size=64",
]


def quick_config(**sections) -> Config:
    """A small real-data config: SimpleNN on a class-balanced slice of Fashion-MNIST, one epoch."""
    raw = {
        "name": "test",
        "data": {"dataset": "fashion_mnist", "train_subset": 600, "test_subset": 200, "val_fraction": 0.2},
        "model": {"name": "simplenn"},
        "optim": {"name": "adam", "lr": 0.003},
        "train": {"epochs": 1, "batch_size": 64, "eval_batch_size": 256},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return validate(raw, "test config")


def placements(out: torch.Tensor, originals: torch.Tensor, padding: int) -> list[tuple[int, int, int, bool]]:
    """Every (original index, dy, dx, flipped) such that `out` is exactly the window at (dy, dx) of that original
    zero-padded by `padding`, mirrored left-right when flipped: where an augmented image came from, found by
    trying every placement (an identity crop is dy = dx = padding)."""
    n, c, h, w = originals.shape
    padded = torch.nn.functional.pad(originals, (padding,) * 4)
    windows = padded.unfold(2, h, 1).unfold(3, w, 1).permute(0, 2, 3, 1, 4, 5)  # (n, dy, dx, c, h, w)
    centre = (..., slice(max(0, h // 2 - 2), h // 2 + 2), slice(max(0, w // 2 - 2), w // 2 + 2))
    found = []
    for flipped in (False, True):
        target = (out.flip(-1) if flipped else out).to(originals.dtype)
        near = (windows[centre] == target[centre]).flatten(3).all(-1)  # a 4x4 patch first, then the whole window
        found += [
            (i, dy, dx, flipped) for i, dy, dx in near.nonzero().tolist() if torch.equal(windows[i, dy, dx], target)
        ]
    return found
