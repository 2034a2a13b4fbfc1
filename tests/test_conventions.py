"""What users of Lightning, fastai, Keras and torchvision look for (issue 21): --version, shell completion,
--dry-run, fp16 and mps, torchvision's weight names."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

import cnnlab
from cnnlab.analysis.dry_run import dry_run
from cnnlab.models import create_model
from tests.conftest import quick_config


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_version_and_shell_completion():
    assert cli("--version").stdout.strip() == f"cnnlab {cnnlab.__version__}"
    done = cli(env={"_CNNLAB_COMPLETE": "complete_bash", "COMP_WORDS": "cnnlab lr", "COMP_CWORD": "1"})
    assert done.stdout.split() == ["lr-find"]
    assert "complete -o default" in cli("--show-completion", "bash").stdout


def test_dry_run_prints_the_resolved_config_and_the_model_and_trains_nothing(tmp_path, data_root):
    done = cli("run", "simplenn-cifar10", "train.epochs=3", "optim.lr=0.05", "--dry-run", "--runs-dir", tmp_path,
               "--data-dir", data_root)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert resolved["train"]["epochs"] == 3 and resolved["optim"]["lr"] == 0.05
    assert resolved["train"]["eval_batch_size"] == 1000  # defaults filled in
    assert done.stdout.rstrip().splitlines()[-1] == ("# experiment simplenn-cifar10 (simplenn): 3x32x32 in, "
                                                     "82,078 parameters (82,078 trainable), 0.72 M MACs per image")
    assert not any(tmp_path.iterdir())


def test_dry_run_from_python_returns_an_object(data_root):
    cfg = quick_config()
    result = dry_run(cfg, data_root)
    assert result.params == sum(p.numel() for p in create_model(cfg.model, (1, 28, 28), 10).parameters())
    assert "1x28x28 in" in result.model_line and "dataset: fashion_mnist" in str(result)
