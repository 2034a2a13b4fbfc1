"""How far an input transform y = a*x + b moves a trained network: curves and outputs, two runs compared."""

from __future__ import annotations

from pathlib import Path

from cnnlab import metrics
from cnnlab.analysis.affine import trace_affine
from cnnlab.engine.run_setup import BuiltRun
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


def output_shift(plain: BuiltRun, moved: BuiltRun) -> dict:
    """Both final models on the same test images (each through its own input transform)."""
    a, b = (predict(built.model, built.data.test, built.cfg.train.precision == "bf16") for built in (plain, moved))
    diff = (a - b).abs()
    return {
        "test_outputs": int(a.shape[0]),
        "max_abs_logit_diff": diff.max().item(),
        "mean_abs_logit_diff": diff.mean().item(),
        "mean_abs_logit": a.abs().mean().item(),
        "prediction_agreement": (a.argmax(1) == b.argmax(1)).float().mean().item(),
    }


def _layers(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def _remove(norms: list[str]) -> str:
    """'bn1 removes' or 'bn1, bn2 remove'."""
    return f"{_layers(norms)} {'removes' if len(norms) == 1 else 'remove'}"


def verdict(c: dict) -> list[str]:
    """What the traced path of the transform (c["path"], from the built network) says about the measured shift."""
    path, a = c["path"], c["affine_a"]
    seen = _layers([f"{s['layer']} ({s['type']}, {s['input']})" for s in path["seen_by"]])
    loss = c["curves"].get("train_loss", {}).get("max_abs_diff")
    moved = f" (training loss apart by up to {loss:.4g})" if loss is not None else ""
    out = [
        f"In this network the transformed input reaches {seen} (raw: the input itself, only moved or copied; "
        "affine: through linear layers, which batch norm removes; mixed: through a nonlinearity)."
    ]
    if a < 0:
        out.append(
            "Expected for a < 0: the first normalised layer's output is negated, so after the activation the "
            "network sees different features, and training takes a different path."
        )
    if path["output"]:
        out.append(
            f"It reaches the output without a batch norm in between, through {' -> '.join(path['to_output'])}: "
            f"{path['to_output'][-1]} sees a and b, so the two runs train differently{moved}"
            + (f"; {_remove(path['absorbed_by'])} it on the other paths." if path["absorbed_by"] else ".")
        )
    elif a > 0:
        padded = f"zero padding in {_layers(path['padded'])} (not transformed with the input), " * bool(path["padded"])
        out.append(
            "Every path from the input meets a batch norm after linear layers only: "
            f"{_remove(path['absorbed_by'])} a and b with the batch statistics{moved}. "
            f"What remains comes from {padded}batch norm's eps (not scaled by a), running statistics still "
            "remembering their start, and floating-point rounding growing over many steps of training."
        )
    return out


def compare(plain_run: RunFolder, moved_run: RunFolder, data_root: Path) -> dict:
    plain, moved = (restore(run, data_root, which="last") for run in (plain_run, moved_run))
    x, _ = next(iter(moved.data.test.batches()))
    c = {
        "affine_a": moved.cfg.data.affine_a,
        "affine_b": moved.cfg.data.affine_b,
        "plain_run": str(plain_run.path),
        "affine_run": str(moved_run.path),
        "curves": curve_shift(plain_run.metrics(), moved_run.metrics()),
        "outputs": output_shift(plain, moved),
        "path": trace_affine(moved.model, x).record(),
    }
    return {**c, "verdict": verdict(c)}
