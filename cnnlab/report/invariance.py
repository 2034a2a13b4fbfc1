"""How far an input transform y = a*x + b moves a trained network: curves and outputs, two runs compared."""
from __future__ import annotations

from pathlib import Path

from cnnlab import metrics
from cnnlab.engine.restore import predict, restore
from cnnlab.runfolder import RunFolder


def curve_shift(plain: list[dict], moved: list[dict]) -> dict[str, dict]:
    """Per metric: the largest and the final |difference| between the two runs over the epochs both have."""
    out = {}
    for key in metrics.split_keys(metrics.all_keys(plain)):
        diffs = [abs(p[key] - m[key]) for p, m in zip(plain, moved) if key in p and key in m]
        if diffs:
            out[key] = {"max_abs_diff": max(diffs), "final_abs_diff": diffs[-1]}
    return out


def output_shift(plain_run: RunFolder, moved_run: RunFolder, data_root: Path) -> dict:
    """Both final models on the same test images (each through its own input transform)."""
    results = []
    for run in (plain_run, moved_run):
        built = restore(run, data_root, which="last")
        results.append(predict(built.model, built.data.test, built.cfg.train.precision == "bf16"))
    a, b = results
    diff = (a - b).abs()
    return {
        "test_outputs": int(a.shape[0]),
        "max_abs_logit_diff": diff.max().item(),
        "mean_abs_logit_diff": diff.mean().item(),
        "mean_abs_logit": a.abs().mean().item(),
        "prediction_agreement": (a.argmax(1) == b.argmax(1)).float().mean().item(),
    }


def compare(plain_run: RunFolder, moved_run: RunFolder, data_root: Path) -> dict:
    moved_cfg = moved_run.config()
    return {
        "affine_a": moved_cfg.data.affine_a,
        "affine_b": moved_cfg.data.affine_b,
        "plain_run": str(plain_run.path),
        "affine_run": str(moved_run.path),
        "curves": curve_shift(plain_run.metrics(), moved_run.metrics()),
        "outputs": output_shift(plain_run, moved_run, data_root),
    }
