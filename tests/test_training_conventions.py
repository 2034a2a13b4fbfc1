"""Early stopping (recorded as the run's ending, resume-safe), gradient clipping, gradient accumulation, fp16 and
mps as this CPU machine can check them: on real Fashion-MNIST slices (issue 21.2, 21.4)."""

from __future__ import annotations

import pytest
import torch

from cnnlab import device as device_mod
from cnnlab.engine.run_setup import build_run
from cnnlab.engine.trainer import Progress, Trainer
from cnnlab.errors import CnnlabError
from cnnlab.runfolder import RunFolder
from cnnlab.runner import resume_run, start_run
from tests.conftest import quick_config

NO_BN = "conv 8 k3 -> relu -> maxpool 2 -> flatten -> dense classes"  # batch norm would see the micro-batches


def stop_after_epoch(n: int):
    def hook(row):
        if row["epoch"] == n:
            raise KeyboardInterrupt

    return hook


def only_run(folder) -> RunFolder:
    (path,) = [p for p in folder.iterdir() if p.is_dir()]
    return RunFolder(path)


def early_config():
    """val_acc must rise by 0.5 to count: no epoch after the first improves, so patience 2 stops at epoch 3."""
    return quick_config(
        deterministic=True, train={"epochs": 20, "early_stop": {"monitor": "val_acc", "patience": 2, "min_delta": 0.5}}
    )


def test_early_stop_is_the_runs_ending_and_a_resumed_run_ends_the_same(data_root, tmp_path):
    messages = []
    run = start_run(early_config(), tmp_path / "whole", data_root, Progress(message=messages.append))
    summary = run.summary().to_dict()
    assert summary["status"] == "completed" and summary["epochs_done"] == 3 and len(run.metrics()) == 3
    assert summary["stopped_early"]["ending"] == "completed (stopped early at epoch 3)"
    assert summary["stopped_early"]["best_epoch"] == 1 and summary["stopped_early"]["monitor"] == "val_acc"
    assert run.best_path.exists() and summary["best_epoch"] is not None
    assert any("stopped early at epoch 3: val_acc has not improved by more than 0.5 for 2" in m for m in messages)
    for stop_at in (2, 3):  # before it stops; after last.pt says it stopped but before summary.json says completed
        with pytest.raises(KeyboardInterrupt):
            start_run(
                early_config(), tmp_path / f"cut{stop_at}", data_root, Progress(epoch_end=stop_after_epoch(stop_at))
            )
        cut = only_run(tmp_path / f"cut{stop_at}" / "test")
        assert cut.summary().to_dict()["status"] == "stopped"
        resumed = resume_run(cut.path, data_root).summary().to_dict()
        assert resumed["stopped_early"] == summary["stopped_early"] and resumed["epochs_done"] == 3
        assert [r["val_loss"] for r in cut.metrics()] == [r["val_loss"] for r in run.metrics()]


def trained_weights(data_root, **train) -> dict[str, torch.Tensor]:
    cfg = quick_config(
        deterministic=True,
        model={"name": None, "spec": NO_BN},
        data={"train_subset": 642},
        optim={"name": "sgd", "lr": 0.05, "momentum": 0.9},
        train={"batch_size": 64, **train},
    )
    built = build_run(cfg, data_root)
    trainer = Trainer(built)
    trainer.state.initial_loss = 0.0  # the training step alone is compared
    for epoch in (1, 2):
        trainer.train_epoch(epoch)
    return {k: v.clone() for k, v in built.model.state_dict().items()}


def test_two_accumulated_batches_of_32_train_as_one_of_64(data_root):
    whole = trained_weights(data_root)  # 512 training images (642, a fifth held out): 8 batches of 64, 16 of 32
    accumulated = trained_weights(data_root, batch_size=32, accumulate=2)
    halves = trained_weights(data_root, batch_size=32)
    for key in whole:
        torch.testing.assert_close(accumulated[key], whole[key], rtol=1e-4, atol=1e-4)  # 16 steps of rounding
    assert any((halves[k] - whole[k]).abs().max() > 1e-3 for k in whole)  # not the same without accumulating


def test_clip_grad_norm_bounds_every_step(data_root):
    start = build_run(quick_config(model={"name": None, "spec": NO_BN}), data_root).model.state_dict()  # cfg.seed's

    def moved(weights: dict) -> float:
        return torch.cat([(weights[k] - start[k]).flatten() for k in start]).norm().item()

    assert moved(trained_weights(data_root, clip_grad_norm=1e9)) > 0.1  # a bound that never bites
    assert moved(trained_weights(data_root, clip_grad_norm=1e-6)) <= 0.05 * 16 * 1e-6 / (1 - 0.9) * 1.01  # lr x steps
    #                                                     x max norm, times momentum's 1/(1-0.9) at most


def test_fp16_is_refused_on_the_cpu_with_what_to_use(data_root):
    with pytest.raises(CnnlabError, match="train.precision fp16 .* is for CUDA GPUs; this run is on cpu: use bf16"):
        build_run(quick_config(device="cpu", train={"precision": "fp16"}), data_root)


def test_fp16_autocasts_to_half_with_a_gradient_scaler(data_root, monkeypatch):
    """What a CUDA run gets (checked on the CPU by lifting the refusal: autocast's dtype and the scaler's kind)."""
    monkeypatch.setattr("cnnlab.engine.run_setup.check_precision", lambda cfg, device: None)
    built = build_run(quick_config(device="cpu", train={"precision": "fp16"}), data_root)
    with built.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.float16 and torch.is_autocast_enabled("cpu")
    assert isinstance(built.grad_scaler(), torch.amp.GradScaler)
    assert build_run(quick_config(device="cpu"), data_root).grad_scaler() is None


@pytest.mark.slow  # float16 convolutions on a CPU are slow
def test_fp16_training_steps_through_the_scaler_and_resumes_with_its_state(data_root, tmp_path, monkeypatch):
    """The CUDA path (scale, unscale for clipping, step, update; the scale in last.pt) run on the CPU, whose torch
    has float16 autocast and a CPU gradient scaler: only the refusal is lifted."""
    monkeypatch.setattr("cnnlab.engine.run_setup.check_precision", lambda cfg, device: None)
    cfg = quick_config(device="cpu", train={"epochs": 2, "precision": "fp16", "clip_grad_norm": 1.0})
    with pytest.raises(KeyboardInterrupt):
        start_run(cfg, tmp_path, data_root, Progress(epoch_end=stop_after_epoch(1)))
    run = only_run(tmp_path / "test")
    scaler = torch.load(run.last_path, weights_only=True)["scaler"]
    assert scaler["scale"] > 0 and scaler["_growth_tracker"] > 0  # steps were taken through it
    summary = resume_run(run.path, data_root).summary().to_dict()
    assert summary["status"] == "completed" and summary["final"]["val_acc"] > 0.5


def test_mps_is_picked_by_auto_after_cuda_and_refused_where_torch_has_none(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "mps_available", lambda: True)
    assert device_mod.pick_device("auto") == torch.device("mps") and device_mod.pick_device("mps").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_mod.pick_device("auto") == torch.device("cuda")
    monkeypatch.setattr(device_mod, "mps_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_mod.pick_device("auto") == torch.device("cpu")
    with pytest.raises(CnnlabError, match="device mps was asked for but torch cannot use Apple's GPU here"):
        device_mod.pick_device("mps")
    assert quick_config(device="mps").device == "mps"
