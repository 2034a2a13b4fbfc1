"""Turn a parsed layer spec into a torch module, checking every shape on the way.

Shapes are worked out layer by layer with the arithmetic written down (floor((W - F + 2P)/S) + 1),
so a spec that does not fit is refused with the layer named and the numbers shown, before torch
ever sees it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.spec import ACTIVATION_KINDS, TEXT_OPTIONS, Layer, evaluate

ACTIVATION_MODULES = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}


@dataclass(frozen=True)
class ModelOptions:
    """Choices a study varies across one architecture."""

    bn: bool = True
    bn_position: str = "before"  # batch norm before or after the activation
    activation: str = "relu"
    dropout: float = 0.0
    init: str = "default"
    upsample: str = "nearest"  # what `upsample` layers without a mode do: nearest | bilinear | transposed


@dataclass(frozen=True)
class ShapeStep:
    """What one layer did to the shape, with the arithmetic that explains it."""

    layer: Layer
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    arithmetic: str


class Save(nn.Module):
    """Marks a tensor to be used again by a later `cat` or `add` of the same name."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x):
        return x

    def extra_repr(self):
        return self.name


class Concat(nn.Module):
    """U-Net skip: concatenate a saved tensor along channels."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x, skip):
        return torch.cat([x, skip], dim=1)

    def extra_repr(self):
        return self.name


class Add(nn.Module):
    """Residual skip: add a saved tensor."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x, skip):
        return x + skip

    def extra_repr(self):
        return self.name


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


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
    out: list[Layer] = []
    for layer in layers:
        if layer.kind == "bn" and not options.bn:
            continue
        if layer.kind == "act":
            layer = replace(layer, kind=options.activation)
        if layer.kind == "upsample" and layer.options["mode"] is None:
            layer = replace(layer, options={**layer.options, "mode": options.upsample})
        if layer.kind == "dropout" and layer.options["p"] is None:
            if not options.dropout:
                continue
            layer = replace(layer, options={"p": options.dropout})
        out.append(layer)
    if options.bn_position == "after":  # spec order is bn -> act; swap each such pair
        i = 0
        while i < len(out) - 1:
            if out[i].kind == "bn" and out[i + 1].kind in ACTIVATION_KINDS:
                out[i], out[i + 1] = out[i + 1], out[i]
                i += 2
            else:
                i += 1
    return out


def window_size(size, k, s, p):
    """Output length of a sliding window (convolution, pooling): floor((W - F + 2P)/S) + 1.

    The same line serves integers and sympy expressions (`//` is floor division for both), so the
    builder and the symbolic counts share one formula.
    """
    return (size - k + 2 * p) // s + 1


def transposed_size(size, k, s, p):
    """Output length of a transposed convolution: (W - 1)*S - 2P + F."""
    return (size - 1) * s - 2 * p + k


def window_text(size: int, k: int, s: int, p: int, dim: str) -> str:
    return f"{dim}: floor(({size} - {k} + 2*{p})/{s}) + 1 = {window_size(size, k, s, p)}"


def transposed_text(size: int, k: int, s: int, p: int, dim: str) -> str:
    return f"{dim}: ({size} - 1)*{s} - 2*{p} + {k} = {transposed_size(size, k, s, p)}"


def _conv_out(size: int, k: int, s: int, p: int, dim: str, where: str) -> tuple[int, str]:
    out, arith = window_size(size, k, s, p), window_text(size, k, s, p, dim)
    if size + 2 * p < k or out < 1:
        raise CnnlabError(f"{where}: the kernel ({k}) is larger than its padded input ({size} + 2*{p}); {arith}")
    return out, arith


def _spatial(shape, where: str, kind: str):
    if len(shape) != 3:
        raise CnnlabError(f"{where}: {kind} needs an image-shaped input (C, H, W) but gets {shape}; move it before 'flatten'")
    return shape


def _layer(layer: Layer, shape: tuple, values: dict, saved: dict) -> tuple[Optional[nn.Module], tuple, str]:
    """Build one layer: (module, output shape, arithmetic)."""
    where = layer.where()
    opt = {k: v if k in TEXT_OPTIONS else evaluate(v, values, where) for k, v in layer.options.items()}
    kind = layer.kind
    if kind in ("conv", "dwconv", "maxpool", "avgpool"):
        c, h, w = _spatial(shape, where, kind)
        k, p = opt["k"], opt["p"]
        s = opt["s"] if opt["s"] is not None else k
        oh, ah = _conv_out(h, k, s, p, "H", where)
        ow, aw = _conv_out(w, k, s, p, "W", where)
        if kind == "dwconv":
            return nn.Conv2d(c, c, k, s, p, bias=bool(opt["bias"]), groups=c), (c, oh, ow), f"{ah}; {aw}"
        if kind == "conv":
            if c % opt["groups"] or opt["out"] % opt["groups"]:
                raise CnnlabError(f"{where}: groups={opt['groups']} must divide both {c} input and {opt['out']} output channels")
            module = nn.Conv2d(c, opt["out"], k, s, p, bias=bool(opt["bias"]), groups=opt["groups"])
            return module, (opt["out"], oh, ow), f"{ah}; {aw}"
        pool = nn.MaxPool2d(k, s, p) if kind == "maxpool" else nn.AvgPool2d(k, s, p)
        return pool, (c, oh, ow), f"{ah}; {aw}"
    if kind == "convT":
        c, h, w = _spatial(shape, where, kind)
        k, s, p = opt["k"], opt["s"], opt["p"]
        oh, ow = transposed_size(h, k, s, p), transposed_size(w, k, s, p)
        arith = f"{transposed_text(h, k, s, p, 'H')}; {transposed_text(w, k, s, p, 'W')}"
        return nn.ConvTranspose2d(c, opt["out"], k, s, p, bias=bool(opt["bias"])), (opt["out"], oh, ow), arith
    if kind == "upsample":
        c, h, w = _spatial(shape, where, kind)
        f = opt["scale"]
        if opt["mode"] == "transposed":  # learned upsampling with as many channels out as in
            return nn.ConvTranspose2d(c, c, f, f), (c, h * f, w * f), f"H, W: x{f} (transposed convolution k{f} s{f})"
        if opt["mode"] not in ("nearest", "bilinear"):
            raise CnnlabError(f"{where}: mode must be nearest, bilinear or transposed")
        align = False if opt["mode"] == "bilinear" else None
        return nn.Upsample(scale_factor=f, mode=opt["mode"], align_corners=align), (c, h * f, w * f), f"H, W: x{f}"
    if kind == "flatten":
        n = 1
        for d in shape:
            n *= d
        return nn.Flatten(), (n,), " * ".join(map(str, shape)) + f" = {n} features"
    if kind == "gap":
        c, h, w = _spatial(shape, where, kind)
        return GlobalAvgPool(), (c,), f"mean over {h}x{w} -> {c} features"
    if kind == "dense":
        if len(shape) != 1:
            raise CnnlabError(f"{where}: dense needs a flat input but gets {shape}; add 'flatten' (or 'gap') before it")
        if opt["in"] is not None and opt["in"] != shape[0]:
            before = saved.get("__pre_flatten__", shape)
            raise CnnlabError(
                f"{where}: expects {opt['in']} input features but the layer before gives {shape[0]} "
                f"(flatten: {' * '.join(map(str, before))} = {shape[0]}); "
                f"change 'in={opt['in']}' to 'in={shape[0]}' or the layers before it"
            )
        return nn.Linear(shape[0], opt["out"], bias=bool(opt["bias"])), (opt["out"],), f"{shape[0]} -> {opt['out']}"
    if kind == "bn":
        module = nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])
        return module, shape, ""
    if kind in ACTIVATION_MODULES:
        return ACTIVATION_MODULES[kind](), shape, ""
    if kind == "dropout":
        if not 0 <= opt["p"] < 1:
            raise CnnlabError(f"{where}: dropout p must be in [0, 1), got {opt['p']}")
        return nn.Dropout(opt["p"]), shape, ""
    if kind == "save":
        saved[opt["name"]] = shape
        return Save(opt["name"]), shape, ""
    if kind in ("cat", "add"):
        name, other = opt["name"], saved[opt["name"]]  # presence and sizes checked by _check_skip
        if kind == "cat":
            out = (shape[0] + other[0],) + tuple(shape[1:])
            return Concat(name), out, f"channels: {shape[0]} + {other[0]} = {out[0]}"
        return Add(name), shape, ""
    raise CnnlabError(f"{where}: layer kind '{kind}' cannot be built")


def _check_skip(layer: Layer, shape: tuple, saved: dict, steps: list[ShapeStep]) -> None:
    """A `cat`/`add` needs its saved tensor to match: refuse with both shapes and the arithmetic between."""
    name = layer.options["name"]
    if name not in saved:
        raise CnnlabError(f"{layer.where()}: nothing was saved as '{name}' before this layer; add 'save {name}' earlier")
    other = saved[name]
    if len(shape) == len(other) and shape[-2:] == other[-2:] and (layer.kind == "cat" or shape == other):
        return
    need = "the same shape" if layer.kind == "add" else "the same height and width"
    since = [s for s in steps if s.layer.index > saved[f"__at__{name}"] and s.in_shape[-2:] != s.out_shape[-2:]]
    path = "; ".join(f"{s.layer.where()}: {s.arithmetic}" for s in since) or "no layer changed the size"
    raise CnnlabError(
        f"{layer.where()}: the skip '{name}' has shape {other} but the current tensor has {shape}; "
        f"{layer.kind} needs {need}. Since 'save {name}': {path}"
    )


def module_names(layers: list[Layer]) -> list[str]:
    """The name of each layer's module: its kind and a count (conv1, conv2, bn1, ...)."""
    counts: dict[str, int] = {}
    names = []
    for layer in layers:
        counts[layer.kind] = counts.get(layer.kind, 0) + 1
        names.append(f"{layer.kind}{counts[layer.kind]}")
    return names


def initialise(model: nn.Module, scheme: str) -> None:
    """Xavier or Kaiming for conv and dense weights (biases to zero); 'default' keeps torch's own."""
    if scheme == "default":
        return
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build(layers: list[Layer], in_shape: tuple[int, int, int], values: dict[str, int], options: ModelOptions, spec_text: str = "") -> SpecNet:
    """Build a SpecNet for inputs of `in_shape` (C, H, W), with named hyper-parameters `values`."""
    layers = apply_options(layers, options)
    shape: tuple = tuple(in_shape)
    saved: dict = {}
    named: list[tuple[str, nn.Module]] = []
    steps: list[ShapeStep] = []
    for layer, name in zip(layers, module_names(layers)):
        if layer.kind in ("cat", "add"):
            _check_skip(layer, shape, saved, steps)
        module, out_shape, arith = _layer(layer, shape, values, saved)
        if layer.kind == "flatten":
            saved["__pre_flatten__"] = shape
        if layer.kind == "save":
            saved[f"__at__{layer.options['name']}"] = layer.index
        named.append((name, module))
        steps.append(ShapeStep(layer, shape, out_shape, arith))
        shape = out_shape
    net = SpecNet(named, steps, spec_text)
    initialise(net, options.init)
    return net
