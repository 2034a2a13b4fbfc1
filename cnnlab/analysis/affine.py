"""Where an input transform y = a*x + b travels inside a built network, traced through what its forward runs.

Batch norm with batch statistics removes a per-channel scale and shift, so a > 0 is invisible to a network in
which every path from the input reaches a batch norm through linear steps only; a path that reaches the output
without one (a U-Net's skip of the input into its last convolution) carries a and b to the output.
Traced for a > 0: max pooling commutes with a positive scale only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

# What reaches a tensor from the transformed input, from weakest to strongest:
RAW = "raw"  # the input itself, only moved or copied (cat, pooling, upsampling, reshaping)
AFFINE = "affine"  # through weighted linear layers: still a per-channel a*z + c, which batch norm removes
MIXED = "mixed"  # through a nonlinearity or added to an unscaled tensor: batch norm cannot remove it
LEVELS = (RAW, AFFINE, MIXED)

MOVES = {
    "cat",
    "concat",
    "max_pool1d",
    "max_pool2d",
    "_max_pool2d",
    "max_pool2d_with_indices",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "interpolate",
    "upsample",
    "view",
    "reshape",
    "flatten",
    "contiguous",
    "clone",
    "__getitem__",
    "mean",
    "pad",
    "to",
    "float",
    "bfloat16",
}
WEIGHTED = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "linear"}
NORMS = {"batch_norm"}
SUMS = {"add", "__add__", "__radd__", "add_", "__iadd__", "sub", "__sub__", "__rsub__"}
SCALES = {"mul", "__mul__", "__rmul__", "div", "__truediv__", "mul_"}


@dataclass
class AffinePath:
    """Which layers the transformed input reaches, which batch norms remove it, and what reaches the output."""

    seen_by: list[dict] = field(default_factory=list)  # {"layer", "type", "input": raw | affine | mixed}
    absorbed_by: list[str] = field(default_factory=list)  # batch norms whose input carried it and output did not
    output: str | None = None  # what of it reaches the network's output (None: nothing)
    to_output: list[str] = field(default_factory=list)  # the layers it passed on its way there, input first
    padded: list[str] = field(default_factory=list)  # layers that see it with zero padding (not transformed)

    def record(self) -> dict:
        return {
            "seen_by": self.seen_by,
            "absorbed_by": self.absorbed_by,
            "output": self.output,
            "to_output": self.to_output,
            "padded": self.padded,
        }


def _stronger(a: str | None, b: str | None) -> str | None:
    return max((v for v in (a, b) if v), key=LEVELS.index, default=None)


class _Tracer(TorchFunctionMode):
    """Marks every tensor computed from the input with (level, the layers it passed since the input)."""

    def __init__(self):
        super().__init__()
        self.marks: dict[int, tuple[str, tuple[str, ...]]] = {}
        self.alive: list[torch.Tensor] = []  # keeps marked tensors alive so that their ids stay theirs

    def mark(self, t, level: str | None, path: tuple[str, ...]) -> None:
        if isinstance(t, torch.Tensor) and level:
            self.marks[id(t)] = (level, path)
            self.alive.append(t)

    def of(self, args) -> tuple[list, list]:
        tensors = [t for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor)]
        return tensors, [self.marks[id(t)] for t in tensors if id(t) in self.marks]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors, marked = self.of((args, kwargs))
        if marked:
            level, path = max(marked, key=lambda m: LEVELS.index(m[0]))
            level = self.after(getattr(func, "__name__", ""), level, len(tensors), len(marked))
            for t in tree_flatten(out)[0]:
                self.mark(t, level, path)
        return out

    @staticmethod
    def after(name: str, level: str, n_tensors: int, n_marked: int) -> str | None:
        """The level an operation's output has, given the strongest level among its inputs."""
        name = name.rsplit(".", 1)[-1]
        if name in MOVES or (name in SCALES and n_tensors == 1):
            return level
        if name in WEIGHTED:
            return _stronger(level, AFFINE)
        if name in NORMS:
            return MIXED if level == MIXED else None
        if name in SUMS and n_tensors == n_marked:
            return _stronger(level, AFFINE)
        return MIXED


def trace_affine(model: nn.Module, x: torch.Tensor) -> AffinePath:
    """One forward pass of `x` (standing for the transformed input) with every leaf layer watched."""
    tracer, found = _Tracer(), AffinePath()
    leaves = [(name, m) for name, m in model.named_modules() if name and not list(m.children())]

    def before(name, module):
        def hook(_, inputs):
            marked = tracer.of(inputs)[1]
            if marked:
                level = max((m[0] for m in marked), key=LEVELS.index)
                found.seen_by.append({"layer": name, "type": type(module).__name__, "input": level})
                if any(p for p in tree_flatten(getattr(module, "padding", 0))[0] if isinstance(p, int)):
                    found.padded.append(name)

        return hook

    def after(name, module):
        def hook(_, inputs, output):
            marked = tracer.of(output)[1]
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and tracer.of(inputs)[1] and not marked:
                found.absorbed_by.append(name)
            for t in tree_flatten(output)[0]:
                if id(t) in tracer.marks:
                    level, path = tracer.marks[id(t)]
                    tracer.mark(t, level, path + (name,))

        return hook

    handles = [
        h
        for name, m in leaves
        for h in (m.register_forward_pre_hook(before(name, m)), m.register_forward_hook(after(name, m)))
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), tracer:
            x = x.clone()
            tracer.mark(x, RAW, ())
            out = model(x)
        marked = tracer.of(out)[1]
        if marked:
            found.output, path = max(marked, key=lambda m: LEVELS.index(m[0]))
            found.to_output = list(path)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return found
