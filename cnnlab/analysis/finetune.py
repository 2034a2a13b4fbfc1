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

        whole, last = self.whole.measured, self.last.measured
        return {
            "model": self.label,
            "input": list(self.input),
            "last_layer": self.last_layer,
            "threads": self.threads,
            "whole": conf(self.whole),
            "last_layer_only": conf(self.last),
            "ratio": {
                "peak_bytes": _div(whole.peak_bytes, last.peak_bytes),
                "seconds_per_step": _div(whole.seconds_per_step, last.seconds_per_step),
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


def _compared(name: str, whole, last) -> list:
    """A row of the whole network against its last layer alone, with their ratio."""
    return [name, whole, last, _div(whole, last)]


def _measured_table(c: FinetuneCost) -> Table:
    whole, last = c.whole.measured, c.last.measured
    threads = f" ({c.threads} thread{'s' if c.threads != 1 else ''})" if whole.device == "cpu" else ""
    rows = [
        _compared("trainable parameters", c.whole.estimate.trainable_params, c.last.estimate.trainable_params),
        _compared("peak memory (bytes)", whole.peak_bytes, last.peak_bytes),
        _compared("time per step (ms)", _ms(whole.seconds_per_step), _ms(last.seconds_per_step)),
    ]
    if whole.allocator_peak_bytes:
        rows.append(_compared("CUDA allocator peak (bytes)", whole.allocator_peak_bytes, last.allocator_peak_bytes))
    title = (
        f"fine-tuning {c.label} at input {'x'.join(map(str, c.input))}, batch size "
        f"{c.whole.estimate.batch_size}, {c.whole.estimate.optimizer}: measured on {whole.device}{threads}"
    )
    return Table(title, ["", "whole network", f"last layer only ({c.last_layer})", "ratio whole / last"], rows)


def _estimate_table(c: FinetuneCost) -> Table:
    whole, last = c.whole.estimate, c.last.estimate
    kinds = ["parameters", "buffers", "gradients", "optimizer_state", "saved_activations", "input_batch"]
    rows = [[k.replace("_", " "), getattr(whole, k), getattr(last, k), WHY.get(k, "")] for k in kinds] + [
        ["estimate", whole.total, last.total, "the sum"],
        ["forward MACs", whole.forward_macs, last.forward_macs, "the frozen layers still run forward"],
        ["backward MACs", whole.backward_macs, last.backward_macs, "no backward pass below the first trainable layer"],
    ]
    return Table(
        "where the difference comes from: estimate of one step, in bytes",
        ["", "whole network", "last layer only", "why"],
        rows,
    )


def finetune_blocks(c: FinetuneCost) -> list[Block]:
    whole, last = c.whole, c.last
    at_peak = sorted(set(whole.measured.by_kind) | set(last.measured.by_kind))
    peak = Table(
        "measured: live tensor bytes at the peak, by what made them",
        ["", "whole network", "last layer only"],
        [[k, whole.measured.by_kind.get(k, 0), last.measured.by_kind.get(k, 0)] for k in at_peak],
    )
    notes = Text(
        [
            f"gradients and optimizer state: "
            f"{human_bytes(whole.estimate.gradients + whole.estimate.optimizer_state)} -> "
            f"{human_bytes(last.estimate.gradients + last.estimate.optimizer_state)}: frozen parameters get neither",
            f"saved activations: {human_bytes(whole.estimate.saved_activations)} "
            f"(kept from {whole.estimate.first_saving} on) -> "
            f"{human_bytes(last.estimate.saved_activations)} (from {last.estimate.first_saving} on): "
            f"autograd keeps nothing below the first trainable layer",
            f"peak memory measured as {whole.measured.method}",
            f"time: median of {whole.measured.steps_timed} steps of each, taken in turn, after a warm-up step "
            f"(forward, stand-in loss = mean square of the output, backward, optimizer step) on "
            f"{whole.measured.device}; other work on the machine moves it, the memory figures do not",
        ],
        "why",
    )
    return [_measured_table(c), _estimate_table(c), peak, notes]


WHY = {
    "parameters": "all kept, trainable or not",
    "buffers": "all kept",
    "gradients": "one per trainable parameter",
    "optimizer_state": "per trainable parameter",
    "saved_activations": "only from the first trainable layer on",
    "input_batch": "the same batch",
}
