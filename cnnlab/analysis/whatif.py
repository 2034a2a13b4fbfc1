"""What-if: the same network changed, counted again, and compared row by row.

  scale      the input's height and width multiplied (e.g. 2: 32x32 -> 64x64)
  separable  every k x k convolution (k > 1, not grouped) replaced by a depthwise k x k convolution
             (one filter per input channel, no bias) and a pointwise 1 x 1 convolution (the bias, if any)
  no_bn      every batch norm removed

Scaling the input leaves the parameters of convolutions and batch norms alone (none of their tensors holds
H or W); only a layer whose input size follows H and W, a dense layer after `flatten`, grows. `scale_notes`
says so with the layers named, so a claim like "batch norm has 4x the parameters at twice the size" is
refuted by the table itself.

A spec network is changed in its spec (so the formulas follow); any other module is changed in place
of its layers (a convolution becomes a Sequential of two, named `.0` and `.1`; a batch norm an Identity).
For each replaced convolution the speed-up in multiply-accumulates is
  k^2*Cin*Cout*HW / (k^2*Cin*HW + Cin*Cout*HW) = k^2*Cout/(k^2 + Cout) = 1/(1/Cout + 1/k^2),
exact for the layer (biases are not MACs), tending to k^2 when Cout is much larger than k^2.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from math import prod
from typing import Any, Optional

import sympy as sp
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.spec_builder import ModelOptions, apply_options, module_names
from cnnlab.models.spec import Layer, evaluate


@dataclass(frozen=True)
class WhatIf:
    scale: Optional[float] = None
    separable: bool = False
    no_bn: bool = False

    def __bool__(self) -> bool:
        return bool(self.scale) or self.separable or self.no_bn

    def label(self) -> str:
        parts = []
        if self.scale:
            parts.append(f"input H and W x{self.scale:g}")
        if self.separable:
            parts.append("k x k convolutions made depthwise separable")
        if self.no_bn:
            parts.append("no batch norm")
        return ", ".join(parts)


@dataclass
class Converted:
    """One convolution made separable: its name, kernel size and output channels (numbers or formulas)."""

    name: str
    k: Any
    out: Any
    parts: list[str] = field(default_factory=list)  # the variant's rows that replace it


def scaled(shape: tuple, factor: Optional[float]) -> tuple:
    """The input shape with H and W multiplied by `factor` (names become formulas, e.g. 2*H)."""
    if not factor:
        return shape
    out = [shape[0]]
    for d in shape[1:]:
        if isinstance(d, int):
            value = d * factor
            if value != int(value):
                raise CnnlabError(f"--scale {factor:g} makes the input size {d} into {value:g}, not a whole number")
            out.append(int(value))
        else:
            out.append(sp.nsimplify(factor) * (sp.sympify(d) if not isinstance(d, str) else _sym(d)))
    return tuple(out)


def _sym(name: str):
    from cnnlab.analysis.symbolic import symbol

    return symbol(name)


def _is_one(value) -> bool:
    return sp.sympify(value) == 1


def separable_spec(layers: list[Layer], values: dict, options: ModelOptions) -> tuple[list[Layer], list[Converted]]:
    """The spec with each k x k convolution split into `dwconv k` + `conv out k1`; `values` may hold symbols."""
    new: list[Layer] = []
    converted_at: dict[int, Any] = {}  # position in `new` of each pointwise conv -> (k, out)
    for layer in layers:
        o = layer.options
        if layer.kind == "conv":
            k = evaluate(o["k"], values, layer.where())
            if not _is_one(k) and _is_one(evaluate(o["groups"], values, layer.where())):
                new.append(
                    Layer(
                        "dwconv",
                        {"k": o["k"], "s": o["s"], "p": o["p"], "bias": 0},
                        f"dwconv from '{layer.text}'",
                        layer.index,
                    )
                )
                converted_at[len(new)] = (k, evaluate(o["out"], values, layer.where()))
                new.append(Layer("conv", {**o, "k": 1, "s": 1, "p": 0}, f"pointwise from '{layer.text}'", layer.index))
                continue
        new.append(layer)
    # name the parts as the builder will: the original conv's place and name go to its pointwise half
    applied_new = apply_options(new, options)
    names_new = module_names(applied_new)
    position = {id(layer): i for i, layer in enumerate(applied_new)}
    converted = []
    for i, (k, out) in converted_at.items():
        j = position[id(new[i])]
        converted.append(Converted(names_new[j], k, out, [names_new[j - 1], names_new[j]]))
    return new, converted


def separable_module(model: nn.Module) -> tuple[nn.Module, list[Converted]]:
    """A copy of `model` with every k x k Conv2d (groups 1) replaced by depthwise + pointwise."""
    model = copy.deepcopy(model)
    converted = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d) and module.groups == 1 and tuple(module.kernel_size) != (1, 1):
            cin, cout = module.in_channels, module.out_channels
            pair = nn.Sequential(
                nn.Conv2d(
                    cin, cin, module.kernel_size, module.stride, module.padding, module.dilation, groups=cin, bias=False
                ),
                nn.Conv2d(cin, cout, 1, bias=module.bias is not None),
            )
            model.set_submodule(name, pair)
            k = module.kernel_size[0] if module.kernel_size[0] == module.kernel_size[1] else module.kernel_size
            converted.append(Converted(name, k, cout, [f"{name}.0", f"{name}.1"]))
    return model, converted


def no_bn_module(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            model.set_submodule(name, nn.Identity())
    return model


def speedup_formula(k, cout):
    """k^2*Cout/(k^2 + Cout): the MAC ratio of a k x k convolution to its depthwise separable version."""
    k2 = sp.sympify(k) ** 2
    return k2 * cout / (k2 + cout)


def ratio(after, before):
    """after/before as a number, or as a simplified formula; None where before is 0."""
    if isinstance(before, (int, float)) and isinstance(after, (int, float)):
        return after / before if before else None
    before, after = sp.sympify(before), sp.sympify(after)
    if before == 0:
        return None
    r = sp.factor(sp.cancel(after / before))
    return float(r) if r.is_number else r


def match_rows(base: list, variant: list, converted: list[Converted]) -> list[tuple[str, Any, list]]:
    """Pair each base row with the variant rows that took its place (none: removed). Rows are LayerCounts."""
    by_name = {(r.name, r.call): r for r in variant}
    parts = {c.name: c.parts for c in converted}
    used = set()
    pairs = []
    for row in base:
        names = parts.get(row.name, [row.name])
        found = [by_name[(n, row.call)] for n in names if (n, row.call) in by_name]
        used |= {(r.name, r.call) for r in found}
        pairs.append((row.name, row, found))
    for r in variant:
        if (r.name, r.call) not in used:
            pairs.append((r.name, None, [r]))
    return pairs


def _grown(i: int, base: list, variant: list) -> list:
    """One line: the layer at row i, whose parameters changed with the input size, and what gave it more features."""
    before, after = base[i], variant[i]
    j = i - 1  # the row that made its input: back past layers that keep the shape (dropout, activations)
    while j > 0 and base[j - 1].output_shape == base[j].output_shape:
        j -= 1
    n_before, n_after = prod(base[i - 1].output_shape), prod(variant[i - 1].output_shape)
    line = [
        f"{before.name}: ",
        before.params,
        " -> ",
        after.params,
        " params (weights ",
        before.weights,
        " -> ",
        after.weights,
        "), because ",
    ]
    if j > 0 and len(base[j].output_shape) == 1 and len(base[j - 1].output_shape) > 1:  # a flatten
        return line + [
            f"{base[j].name} gives it ",
            ratio(n_after, n_before),
            "x the features: ",
            base[j - 1].output_shape,
            " = ",
            n_before,
            " -> ",
            variant[j - 1].output_shape,
            " = ",
            n_after,
        ]
    return line + ["its input has ", ratio(n_after, n_before), "x the features: ", n_before, " -> ", n_after]


def scale_notes(base: list, variant: list, factor) -> list:
    """Why --scale leaves convolution and batch-norm parameters alone, their counts per batch norm,
    and the layers that grew.

    Lines of text and values (numbers or formulas) for a document Text; rows are LayerCounts of the same network.
    """
    area = f"{factor**2:g}"
    lines: list = [
        f"a convolution has Cout x Cin x k x k weights and Cout biases, a batch norm 2C (a scale and a shift per "
        f"channel): neither holds H or W, so an input {factor:g}x as high and wide gives these layers {area}x the "
        f"positions (MACs and activation memory x{area}) and the same parameters"
    ]
    same = len(base) == len(variant) and all(b.name == a.name for b, a in zip(base, variant))
    if not same:  # with layers also replaced or removed, the parameters changed for those reasons too
        return lines
    norms = [(b, a) for b, a in zip(base, variant) if b.type.startswith("BatchNorm") and b.call == 1]
    if norms:
        line: list = ["batch-norm parameters per layer, before -> after: "]
        for i, (b, a) in enumerate(norms):
            line += [f"{', ' if i else ''}{b.name} ", b.params, " -> ", a.params]
        lines.append(line + [" (2C each, C = its channels, which the input size does not change)"])
    grown = [
        _grown(i, base, variant)
        for i, (b, a) in enumerate(zip(base, variant))
        if i > 0 and b.output_shape is not None and sp.expand(a.params - b.params) != 0
    ]
    return lines + (grown or ["no layer's parameters changed: no layer's input size follows H and W in this network"])
