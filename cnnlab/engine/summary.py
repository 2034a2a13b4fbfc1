"""The layout of summary.json: what a run is, how far it got, its best epoch and where it ran."""
from __future__ import annotations

from typing import Optional

import torch


def initial_loss_ok(loss: float, expected: float) -> bool:
    """An untrained model's loss should be near the task's expected value (ln K): within a quarter of it."""
    return abs(loss - expected) < 0.25 * expected


def time_to(history: list[dict], targets: list[float]) -> dict[str, Optional[float]]:
    """Per target ('0.75'): the training seconds (evaluation not counted) until the test accuracy first reached it,
    as seen at the epochs that were evaluated; None if it never did."""
    reached: dict[float, float] = {}
    elapsed = 0.0
    for row in history:
        elapsed += row["train_seconds"]
        for target in targets:
            if target not in reached and row.get("test_acc", -1.0) >= target:
                reached[target] = round(elapsed, 3)
    return {f"{t:g}": reached.get(t) for t in targets}


def device_name(device: torch.device) -> str:
    return str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")


def spread_line(record: dict) -> str:
    """How a run under torchrun was spread (summary.json's `spread`), in words: printed at its start, said in its report."""
    devices = sorted({r["device"] for r in record["ranks"]})
    return (f"spread over {record['world_size']} process(es) on {record['machines']} machine(s), {record['backend']}, "
            f"{record['batch_per_process']} images of each batch per process, batch norm "
            f"{'over the global batch' if record['sync_bn'] else 'per process'}; devices {', '.join(devices)}")


def run_summary(built, state, policy, status: str, error: Optional[str] = None, spread: Optional[dict] = None) -> dict:
    """summary.json of a run built as `built` (cnnlab.engine.build) after the epochs in `state`, with best.pt
    as `policy` (cnnlab.engine.checkpoint) chose it; `status` is running, completed, failed, stopped or pruned.
    `spread`: how a run under torchrun was spread over processes (backend, per-rank machine and device)."""
    cfg, task, model = built.cfg, built.task, built.model
    at_best = next((r for r in state.history if r["epoch"] == policy.best_epoch), {})
    expected = task.expected_initial_loss
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "name": cfg.name,
        "status": status,
        "error": error,
        "epochs_done": state.epoch,
        "epochs": cfg.train.epochs,
        "initial_loss": state.initial_loss,
        "expected_initial_loss": expected,
        "initial_loss_ok": None if state.initial_loss is None or built.starts_trained
        else initial_loss_ok(state.initial_loss, expected),
        "monitor": policy.monitor,
        "best_epoch": policy.best_epoch or None,
        "best_value": policy.best_value if policy.best_epoch else None,
        "best_val_acc": at_best.get("val_acc"),
        "test_acc_at_best": at_best.get("test_acc"),
        **{f"{k}_at_best": v for k, v in at_best.items() if k.startswith("test_") and k != "test_loss"},
        "final": state.history[-1] if state.history else None,
        "params": params,
        "macs_per_image": built.macs_per_image,
        "train_macs_per_image": built.train_macs_per_image,
        "trainable_params": trainable,  # in the last epoch trained (train.unfreeze_after changes it)
        "frozen_params": params - trainable,
        **({"transfer": built.transfer.summary(cfg.train.unfreeze_after)} if built.transfer else {}),
        "device": device_name(built.device),
        "threads": torch.get_num_threads(),
        "peak": built.peak,
        "world_size": built.spread.world,
        **({"spread": spread} if spread else {}),
        "seed": cfg.seed,
        "wall_seconds": round(state.wall_seconds, 3),
        "train_seconds": round(sum(row["train_seconds"] for row in state.history), 3),
        "startup_seconds": state.startup_seconds,
        "time_to": time_to(state.history, cfg.train.targets),
        "task": task.name,
        "classes": built.data.classes,
        "input_shape": list(built.data.shape),
        "data": built.data.info,
        "torch": torch.__version__,
    }
