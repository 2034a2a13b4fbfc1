"""Shared fixtures: the real data root (tests fail, never skip, when it is missing) and quick configs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cnnlab.config import Config, validate

pytest_plugins = ["tests.postgres_server"]  # the real PostgreSQL server fixtures


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = os.environ.get("CNNLAB_DATA")
    if not root or not Path(root).is_dir():
        pytest.fail("set CNNLAB_DATA to the data root (e.g. CNNLAB_DATA=../shared/data make test); the tests use real data")
    return Path(root).resolve()


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
