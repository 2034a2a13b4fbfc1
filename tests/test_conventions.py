"""What users of Lightning, fastai, Keras and torchvision look for (issue 21): --version, shell completion,
--dry-run, fp16 and mps, torchvision's weight names."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torchvision
import yaml

import cnnlab
from cnnlab.analysis.dry_run import dry_run
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.pretrained import cached_file, load_pretrained, torchvision_weights
from cnnlab.models.torchvision_models import build_for_classes
from tests.conftest import quick_config


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_version_and_shell_completion():
    from cnnlab.version import git_commit

    shown = cli("--version").stdout.strip()
    assert shown.startswith(f"cnnlab {cnnlab.__version__}") and ((git_commit() or "")[:12] in shown)
    done = cli(env={"_CNNLAB_COMPLETE": "complete_bash", "COMP_WORDS": "cnnlab lr", "COMP_CWORD": "1"})
    assert done.stdout.split() == ["lr-find"]
    # typer finds the shell from the process tree, which a test or CI process lacks: its own switch takes it by name
    script = cli("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert "complete -o default" in script.stdout, script.stderr


def test_dry_run_prints_the_resolved_config_and_the_model_and_trains_nothing(tmp_path, data_root):
    done = cli(
        "run",
        "simplenn-cifar10",
        "train.epochs=3",
        "optim.lr=0.05",
        "--dry-run",
        "--runs-dir",
        tmp_path,
        "--data-dir",
        data_root,
    )
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert resolved["train"]["epochs"] == 3 and resolved["optim"]["lr"] == 0.05
    assert resolved["train"]["eval_batch_size"] == 1000  # defaults filled in
    assert done.stdout.rstrip().splitlines()[-1] == (
        "# experiment simplenn-cifar10 (simplenn): 3x32x32 in, "
        "82,078 parameters (82,078 trainable), 0.72 M MACs per image"
    )
    assert not any(tmp_path.iterdir())


def test_dry_run_from_python_returns_an_object(data_root):
    cfg = quick_config()
    result = dry_run(cfg, data_root)
    assert result.params == sum(p.numel() for p in create_model(cfg.model, (1, 28, 28), 10).parameters())
    assert "1x28x28 in" in result.model_line and "dataset: fashion_mnist" in str(result)


def transfer_config(name: str, pretrained: str, task: str = "classify", dataset: str = "cifar10"):
    return quick_config(task=task, data={"dataset": dataset}, model={"name": name, "pretrained": pretrained})


def test_torchvision_weight_names_are_checked_against_the_models_enum(tmp_path, monkeypatch):
    assert transfer_config("resnet50", "IMAGENET1K_V2").model.pretrained == "IMAGENET1K_V2"
    assert transfer_config("deeplabv3_mobilenet_v3_large", "COCO_WITH_VOC_LABELS_V1", "segment", "pennfudan")
    with pytest.raises(
        CnnlabError,
        match=r"resnet18's weights \(torchvision's ResNet18_Weights\) are named "
        r"IMAGENET1K_V1, DEFAULT;",
    ):
        transfer_config("resnet18", "IMAGENET1K_V2")
    assert str(torchvision_weights("resnet50", "IMAGENET1K_V1")) == "ResNet50_Weights.IMAGENET1K_V1"
    assert str(torchvision_weights("resnet50", "DEFAULT")) == "ResNet50_Weights.IMAGENET1K_V2"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # a stand-in for torchvision's file, in its cached place
    weights = torchvision_weights("resnet18", "DEFAULT")
    cached_file(weights).parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cached_file(weights))
    record = load_pretrained(build_for_classes("resnet18", 10), "DEFAULT")
    assert record.weights == "ResNet18_Weights.IMAGENET1K_V1" and record.skipped_head == ["fc.weight", "fc.bias"]
    assert record.mean == [0.485, 0.456, 0.406]
