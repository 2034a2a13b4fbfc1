"""Turn a parsed layer spec into a torch module, checking every shape on the way.

Shapes are worked out layer by layer with the arithmetic written down (floor((W - F + 2P)/S) + 1),
so a spec that does not fit is refused with the layer named and the numbers shown, before torch
ever sees it. What each kind builds and checks is its record's business (`cnnlab.models.layer_kinds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import nn

from cnnlab.models.init import initialise
from cnnlab.models.layer_kinds import ACTIVATIONS, KINDS
from cnnlab.models.modules import Add, Concat, Save
from cnnlab.models.spec import Layer
from cnnlab.models.walk import ShapeStep, ShapeWalk


@dataclass(frozen=True)
class ModelOptions:
    """Choices a study varies across one architecture."""

    bn: bool = True
    bn_position: str = "before"  # batch norm before or after the activation
    activation: str = "relu"
    dropout: float = 0.0
    init: str = "default"
    upsample: str = "nearest"  # what `upsample` layers without a mode do: nearest | bilinear | transposed
    bn_momentum: Optional[float] = None  # batch norm's running-statistics momentum (None: torch's 0.1)
    bn_weight_frozen: bool = False  # batch norm's scales stay 1


class SpecNet(nn.Module):
    """A network built from a spec: layers run in order; `Save`/`Concat`/`Add` carry skip tensors."""

    def __init__(self, named_layers: list[tuple[str, nn.Module]], steps: list[ShapeStep], spec_text: str):
        super().__init__()
        for name, module in named_layers:
            self.add_module(name, module)
        self.steps = steps
        self.spec_text = spec_text

    def forward(self, x):
        saved = {}
        for layer in self.children():
            if isinstance(layer, Save):
                saved[layer.name] = x = layer(x)  # called, so hooks (and the counts) see every spec layer
            elif isinstance(layer, (Concat, Add)):
                x = layer(x, saved[layer.name])
            else:
                x = layer(x)
        return x


def apply_options(layers: list[Layer], options: ModelOptions) -> list[Layer]:
    """Resolve the spec's option slots: `bn` kept or dropped, `act` made concrete, `dropout` given its p."""
    out = [resolved for layer in layers if (resolved := KINDS[layer.kind].resolve(layer, options)) is not None]
    if options.bn_position == "after":  # spec order is bn -> act; swap each such pair
        i = 0
        while i < len(out) - 1:
            if out[i].kind == "bn" and out[i + 1].kind in ACTIVATIONS:
                out[i], out[i + 1] = out[i + 1], out[i]
                i += 2
            else:
                i += 1
    return out


def module_names(layers: list[Layer]) -> list[str]:
    """The name of each layer's module: its kind and a count (conv1, conv2, bn1, ...)."""
    counts: dict[str, int] = {}
    names = []
    for layer in layers:
        counts[layer.kind] = counts.get(layer.kind, 0) + 1
        names.append(f"{layer.kind}{counts[layer.kind]}")
    return names


def set_batch_norms(model: nn.Module, momentum, weight_frozen: bool) -> None:
    """Every batch norm's running-statistics momentum (None: torch's own) and whether its scale trains."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if momentum is not None:
                m.momentum = momentum
            if weight_frozen and m.weight is not None:
                m.weight.requires_grad_(False)


def build(
    layers: list[Layer],
    in_shape: tuple[int, int, int],
    values: dict[str, int],
    options: ModelOptions,
    spec_text: str = "",
) -> SpecNet:
    """Build a SpecNet for inputs of `in_shape` (C, H, W), with named hyper-parameters `values`."""
    layers = apply_options(layers, options)
    walk = ShapeWalk(tuple(in_shape))
    named: list[tuple[str, nn.Module]] = []
    for layer, name in zip(layers, module_names(layers)):
        at = walk.enter(layer, values)
        at.kind.check(at)
        out = at.kind.out_shape(at)
        named.append((name, at.kind.module(at, out)))
        walk.leave(at, out, at.kind.arithmetic(at, out))
    net = SpecNet(named, walk.steps, spec_text)
    initialise(net, options.init)
    set_batch_norms(net, options.bn_momentum, options.bn_weight_frozen)
    return net
