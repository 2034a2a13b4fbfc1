"""What named layers output for an input batch: one tensor per call of each layer, taken in eval mode."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.explain.hooks import evaluating, recording
from cnnlab.explain.layer_listing import find_layer


def activations(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, list[torch.Tensor]]:
    """{name: [output of call 1, call 2, ...]} for input `x`, each (N, ...) and detached.

    A layer that did not run has an empty list. Hooks are removed and the model's train/eval mode is
    restored however the pass ends.
    """
    modules = {name: find_layer(model, name) for name in names}
    with evaluating(model), recording(modules) as outputs, torch.no_grad():
        model(x)
    return outputs
