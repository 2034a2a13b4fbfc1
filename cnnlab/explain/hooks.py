"""Forward hooks that record what named layers output, removed (and train/eval mode restored) however a pass ends.

The hook keeps the layer's own output tensor and hands the rest of the network a copy. An in-place
operation after the layer (`ReLU(inplace=True)`) then changes the copy, never the kept tensor: its
values stay the layer's output and, for Grad-CAM, it stays the point of the graph whose gradient is
wanted. A module run several times (one ReLU reused, a block called twice) keeps one tensor per call.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from cnnlab.errors import CnnlabError


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode (batch norm uses its running statistics, no dropout); its own mode back afterwards."""
    modes = {m: m.training for m in model.modules()}  # per module: a frozen backbone may be in eval inside train
    try:
        model.eval()
        yield model
    finally:
        for m, training in modes.items():
            m.train(training)


@contextmanager
def recording(modules: dict[str, nn.Module], keep_graph: bool = False) -> Iterator[dict[str, list[torch.Tensor]]]:
    """{name: [output of call 1, call 2, ...]} for each named module while the block runs; hooks gone afterwards.

    With `keep_graph` the kept tensors stay in the autograd graph (made differentiable when the layers
    before them are frozen); otherwise they are detached.
    """
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    handles = []

    def hook_for(name: str):
        def hook(module, args, output):
            if not isinstance(output, torch.Tensor):
                raise CnnlabError(
                    f"layer '{name}' ({type(module).__name__}) returns {type(output).__name__}, "
                    "not one tensor; pick a layer inside it or after it (see `cnnlab layers`)"
                )
            kept = output
            if not keep_graph:
                kept = output.detach()
            elif not output.requires_grad:  # frozen layers before it: start the graph here
                kept = output.detach().requires_grad_()
            outputs[name].append(kept)
            return kept.clone()

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook_for(name)))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
