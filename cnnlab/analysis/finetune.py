"""`cnnlab cost finetune`: what training only the last layer saves, measured, with the reasons beside it.

Two configurations of the same network, each run for real on the current device:
  whole       every parameter trainable
  last layer  only the last layer that has parameters trainable (all others frozen as a run freezes them)
For each: the peak tensor memory of one step (`training.LiveTensors`) and the median time of a few
steps after a warm-up (the two configurations' steps taken in turn, so that a change in the machine's
load falls on both alike); then the estimate by kind (training.estimate_step), which shows where the
difference comes from: frozen layers get no gradients and no optimizer state, autograd keeps no
activations below the first trainable layer, and the backward pass stops there.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from cnnlab.analysis.count import count
from cnnlab.analysis.fits import refuse_beyond
from cnnlab.document import Block, Table, Text, human_bytes
from cnnlab.analysis.step_cost import StepMeasurement, StepMemory, StepRunner, estimate_step
from cnnlab.errors import CnnlabError
from cnnlab.models.freeze import set_trainable


@dataclass
class Configuration:
    name: str
    estimate: StepMemory
    measured: StepMeasurement


@dataclass
class FinetuneCost:
    label: str
    input: tuple
    last_layer: str
    whole: Configuration
    last: Configuration
    threads: int

    def as_dict(self) -> dict:
        def conf(c: Configuration) -> dict:
            return {"estimate": c.estimate.as_dict(), "measured": c.measured.as_dict()}

        w, l = self.whole.measured, self.last.measured
        return {
            "model": self.label,
            "input": list(self.input),
            "last_layer": self.last_layer,
            "threads": self.threads,
            "whole": conf(self.whole),
            "last_layer_only": conf(self.last),
            "ratio": {
                "peak_bytes": _div(w.peak_bytes, l.peak_bytes),
                "seconds_per_step": _div(w.seconds_per_step, l.seconds_per_step),
                "trainable_params": _div(self.whole.estimate.trainable_params, self.last.estimate.trainable_params),
            },
        }


def _ms(seconds):
    return None if seconds is None else 1000.0 * seconds


def _div(a, b):
    return a / b if a is not None and b else None


def last_layer(model: torch.nn.Module, shape: tuple) -> str:
    """The last executed layer that owns parameters."""
    rows = [r for r in count(model, shape) if r.params and r.output_shape is not None]
    if not rows:
        raise CnnlabError("the model has no layer with parameters; there is nothing to fine-tune")
    return rows[-1].name


def finetune_cost(
    model: torch.nn.Module, label: str, shape: tuple, batch: int, optim, device: torch.device, steps: int = 5
) -> FinetuneCost:
    """Both configurations frozen as a run freezes them (`set_trainable`: no gradients, batch norm kept in eval,
    the frozen front run without autograd), on a copy: whatever selection `model` arrives with (an experiment's
    model.trainable) is replaced in the copy and kept in `model`."""
    name = last_layer(model, shape)
    subject = copy.deepcopy(model)
    estimates, runners = {}, {}
    for config, prefixes in (("whole", None), ("last", [name])):
        set_trainable(subject, prefixes)
        estimates[config] = estimate_step(subject, shape, batch, optim)
        refuse_beyond(
            estimates[config].total,
            f"one training step ({config}) at batch size {batch:,}",
            "lower --batch-size",
            device,
        )
        runners[config] = StepRunner(subject, shape, batch, optim, device)  # a copy, with this selection
        runners[config].measure_memory()
    for _ in range(steps):  # alternate, so that a change in the machine's load falls on both alike
        for runner in runners.values():
            runner.time_step()
    whole, last = (Configuration(c, estimates[c], runners[c].measurement()) for c in ("whole", "last"))
    return FinetuneCost(label, shape, name, whole, last, torch.get_num_threads())


def finetune_blocks(c: FinetuneCost) -> list[Block]:
    w, l = c.whole, c.last
    dev = w.measured.device
    measured = Table(
        f"fine-tuning {c.label} at input {'x'.join(map(str, c.input))}, batch size {w.estimate.batch_size}, "
        f"{w.estimate.optimizer}: measured on {dev}"
        + (f" ({c.threads} thread{'s' if c.threads != 1 else ''})" if dev == "cpu" else ""),
        ["", "whole network", f"last layer only ({c.last_layer})", "ratio whole / last"],
        [
            [
                "trainable parameters",
                w.estimate.trainable_params,
                l.estimate.trainable_params,
                _div(w.estimate.trainable_params, l.estimate.trainable_params),
            ],
            [
                "peak memory (bytes)",
                w.measured.peak_bytes,
                l.measured.peak_bytes,
                _div(w.measured.peak_bytes, l.measured.peak_bytes),
            ],
            [
                "time per step (ms)",
                _ms(w.measured.seconds_per_step),
                _ms(l.measured.seconds_per_step),
                _div(w.measured.seconds_per_step, l.measured.seconds_per_step),
            ],
        ]
        + (
            [
                [
                    "CUDA allocator peak (bytes)",
                    w.measured.allocator_peak_bytes,
                    l.measured.allocator_peak_bytes,
                    _div(w.measured.allocator_peak_bytes, l.measured.allocator_peak_bytes),
                ]
            ]
            if w.measured.allocator_peak_bytes
            else []
        ),
    )
    kinds = ["parameters", "buffers", "gradients", "optimizer_state", "saved_activations", "input_batch"]
    estimate = Table(
        "where the difference comes from: estimate of one step, in bytes",
        ["", "whole network", "last layer only", "why"],
        [[k.replace("_", " "), getattr(w.estimate, k), getattr(l.estimate, k), WHY.get(k, "")] for k in kinds]
        + [
            ["estimate", w.estimate.total, l.estimate.total, "the sum"],
            ["forward MACs", w.estimate.forward_macs, l.estimate.forward_macs, "the frozen layers still run forward"],
            [
                "backward MACs",
                w.estimate.backward_macs,
                l.estimate.backward_macs,
                "no backward pass below the first trainable layer",
            ],
        ],
    )
    at_peak = sorted(set(w.measured.by_kind) | set(l.measured.by_kind))
    peak = Table(
        "measured: live tensor bytes at the peak, by what made them",
        ["", "whole network", "last layer only"],
        [[k, w.measured.by_kind.get(k, 0), l.measured.by_kind.get(k, 0)] for k in at_peak],
    )
    notes = Text(
        [
            f"gradients and optimizer state: {human_bytes(w.estimate.gradients + w.estimate.optimizer_state)} -> "
            f"{human_bytes(l.estimate.gradients + l.estimate.optimizer_state)}: frozen parameters get neither",
            f"saved activations: {human_bytes(w.estimate.saved_activations)} (kept from {w.estimate.first_saving} on) -> "
            f"{human_bytes(l.estimate.saved_activations)} (from {l.estimate.first_saving} on): autograd keeps nothing below the first trainable layer",
            f"peak memory measured as {w.measured.method}",
            f"time: median of {w.measured.steps_timed} steps of each, taken in turn, after a warm-up step (forward, stand-in "
            f"loss = mean square of the output, backward, optimizer step) on {dev}; other work on the machine moves it, "
            f"the memory figures do not",
        ],
        "why",
    )
    return [measured, estimate, peak, notes]


WHY = {
    "parameters": "all kept, trainable or not",
    "buffers": "all kept",
    "gradients": "one per trainable parameter",
    "optimizer_state": "per trainable parameter",
    "saved_activations": "only from the first trainable layer on",
    "input_batch": "the same batch",
}
