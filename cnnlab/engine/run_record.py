"""summary.json filled in from a run being trained (its layout is cnnlab.records.RunSummary)."""

from __future__ import annotations

from typing import Optional

import torch

from cnnlab.records import Provenance, RunSummary


# How far an untrained model's loss may sit from ln K, as a share of it. Below: outputs that do not depend on the
# labels average at least ln K (logsumexp(z) >= ln K + mean(z)), so only sampling noise goes lower; 17% below is a
# mistake in the loop. Above: larger initial logits raise it; the zoo's networks measured -1.4% to +4.8% (seg_unet
# with transposed upsampling, 20 validation images), classifiers within 0.2%.
INITIAL_LOSS_BELOW, INITIAL_LOSS_ABOVE = 0.03, 0.10


def initial_loss_verdict(loss: float, expected: float) -> str:
    """'as expected', 'lower than expected' or 'higher than expected' (both: check the initialisation)."""
    deviation = (loss - expected) / expected
    if deviation < -INITIAL_LOSS_BELOW:
        return "lower than expected"
    return "higher than expected" if deviation > INITIAL_LOSS_ABOVE else "as expected"


def initial_loss_ok(loss: float, expected: float) -> bool:
    return initial_loss_verdict(loss, expected) == "as expected"


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
    """How a run under torchrun was spread (summary.json's `spread`), in words:
    printed at its start, said in its report."""
    devices = sorted({r["device"] for r in record["ranks"]})
    return (
        f"spread over {record['world_size']} process(es) on {record['machines']} machine(s), {record['backend']}, "
        f"{record['batch_per_process']} images of each batch per process, batch norm "
        f"{'over the global batch' if record['sync_bn'] else 'per process'}; devices {', '.join(devices)}"
    )


def run_summary(
    built, state, policy, status: str, error: Optional[str] = None, spread: Optional[dict] = None
) -> RunSummary:
    """summary.json of a run built as `built` (cnnlab.engine.run_setup) after the epochs in `state`, with best.pt
    as `policy` (cnnlab.engine.checkpoint) chose it; `status` is running, completed, failed, stopped or pruned.
    `spread`: how a run under torchrun was spread over processes (backend, per-rank machine and device)."""
    cfg, task, model = built.cfg, built.task, built.model
    at_best = next((r for r in state.history if r["epoch"] == policy.best_epoch), {})
    expected = task.expected_initial_loss
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return RunSummary(
        name=cfg.name,
        status=status,
        error=error,
        epochs_done=state.epoch,
        epochs=cfg.train.epochs,
        initial_loss=state.initial_loss,
        expected_initial_loss=expected,
        initial_loss_ok=None
        if state.initial_loss is None or built.starts_trained
        else initial_loss_ok(state.initial_loss, expected),
        # (initial - expected) / expected, and what it says (INITIAL_LOSS_BELOW, INITIAL_LOSS_ABOVE)
        initial_loss_deviation=None if state.initial_loss is None else (state.initial_loss - expected) / expected,
        initial_loss_verdict=None
        if state.initial_loss is None or built.starts_trained
        else initial_loss_verdict(state.initial_loss, expected),
        monitor=policy.monitor,
        best_epoch=policy.best_epoch or None,
        best_value=policy.best_value if policy.best_epoch else None,
        best_val_acc=at_best.get("val_acc"),
        at_best={k: v for k, v in at_best.items() if k.startswith("test_") and k != "test_loss"},
        final=state.history[-1] if state.history else None,
        params=params,
        macs_per_image=built.macs_per_image,
        train_macs_per_image=built.train_macs_per_image,
        trainable_params=trainable,
        frozen_params=params - trainable,
        transfer=built.transfer.summary(cfg.train.unfreeze_after) if built.transfer else None,
        device=device_name(built.device),
        threads=torch.get_num_threads(),
        peak=built.peak,
        world_size=built.spread.world,
        spread=spread,
        seed=cfg.seed,
        wall_seconds=round(state.wall_seconds, 3),
        train_seconds=round(sum(row["train_seconds"] for row in state.history), 3),
        startup_seconds=state.startup_seconds,
        time_to=time_to(state.history, cfg.train.targets),
        task=task.name,
        classes=built.data.classes,
        input_shape=list(built.data.shape),
        data=built.data.info,
        torch=torch.__version__,
        provenance=Provenance.now(),
    )
