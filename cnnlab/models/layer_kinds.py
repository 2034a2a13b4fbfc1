"""Every layer kind of the spec language, one record each, and the one table of activations.

A record says all there is to know about its kind: how it is written (positional values, options and
their defaults, which options are words), what input it needs, its shape arithmetic and the message
when a shape does not fit, the torch module it builds, and its counts as formulas. The parser
(`spec`), the builder (`build`), the symbolic counter (`analysis.symbolic`) and the config's allowed
`model.activation` and `model.upsample` values all read them, so a new kind or option is written once, here.

Shapes and counts are computed with + - * // only, so the same code serves integers (the builder)
and sympy expressions (the formulas): `//` is floor division for both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod
from typing import TYPE_CHECKING, Any, Optional

from torch import nn

from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.models import modules

if TYPE_CHECKING:
    from cnnlab.models.spec import Layer
    from cnnlab.models.walk import At

# name -> torch module class: the spec's activation kinds, the builder and `model.activation` read it
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}

UPSAMPLE_MODES = ("nearest", "bilinear", "transposed")  # transposed: learned, a transposed convolution
REQUIRED = ...  # the default of an option that must be written


# ---- shape arithmetic ---------------------------------------------------------------------------


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


# ---- the record ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """A layer's counts for one image (integers or formulas); parameters are weights + biases."""

    weights: Any = 0
    biases: Any = 0
    buffers: Any = 0
    macs: Any = 0
    bias_adds: Any = 0


def with_bias(out: tuple, weights, macs, bias) -> Counts:
    """Counts of a layer with weights and, if `bias` is 1, a bias
    (one per output channel, one addition per output value)."""
    return Counts(weights=weights, biases=out[0] * bias, macs=macs, bias_adds=prod(out) * bias)


class LayerKind:
    """One kind of layer. Subclasses override what differs; the defaults are a layer that keeps its input's shape."""

    name: str = ""
    positional: tuple[str, ...] = ()  # values written without a key, in this order
    options: dict[str, Any] = {}  # option -> default (REQUIRED: must be written)
    words: frozenset[str] = frozenset()  # options whose value is a word, not a number or an expression
    needs: Optional[str] = None  # "image": (C, H, W) input; "flat": (N,) input
    new_memory: bool = True  # False: the output is a view or an identity, no new activation memory
    module_class: type[nn.Module] = nn.Identity

    def fits(self, at: At) -> None:
        """Refuse an input this kind cannot take (works on formulas too)."""
        if self.needs == "image" and len(at.shape) != 3:
            raise CnnlabError(
                f"{at.where}: {self.name} needs an image-shaped input (C, H, W) but gets {at.shape}; "
                "move it before 'flatten'"
            )
        if self.needs == "flat" and len(at.shape) != 1:
            raise CnnlabError(
                f"{at.where}: {self.name} needs a flat input but gets {at.shape}; add 'flatten' (or 'gap') before it"
            )

    def check(self, at: At) -> None:
        """Refuse numbers that do not fit, with the arithmetic shown (integers only: the builder)."""

    def out_shape(self, at: At) -> tuple:
        return at.shape

    def arithmetic(self, at: At, out: tuple) -> str:
        return ""

    def module(self, at: At, out: tuple) -> nn.Module:
        raise CnnlabError(f"{at.where}: layer kind '{self.name}' cannot be built")

    def type_name(self, at: At) -> str:
        """The class name of the module it builds (the formula table names rows as the built network does)."""
        return self.module_class.__name__

    def counts(self, at: At, out: tuple) -> Counts:
        return Counts()

    def shrink(self, options: dict) -> Any:
        """The factor this layer divides H and W by, from its written options (1: keeps or grows them)."""
        return 1

    def remember(self, at: At) -> None:
        """Note in the walk what later layers need to know (a saved tensor, the shape before flatten)."""

    def resolve(self, layer: Layer, options) -> Optional[Layer]:
        """The layer as the model's options (ModelOptions) make it; None: dropped. Slots override this."""
        return layer


class Window(LayerKind):
    """A sliding window over H and W (convolution, pooling): floor((W - F + 2P)/S) + 1 each."""

    needs = "image"

    def window(self, at: At) -> tuple:
        """(F, S, P): the kernel, the stride (the kernel when not written) and the padding."""
        k = at.opt["k"]
        return k, at.opt["s"] if at.opt["s"] is not None else k, at.opt["p"]

    def shrink(self, options: dict) -> Any:
        return options["s"] if options["s"] is not None else options["k"]

    def channels(self, at: At) -> Any:
        return at.shape[0]

    def check(self, at: At) -> None:
        k, s, p = self.window(at)
        if s < 1:
            raise CnnlabError(f"{at.where}: the stride must be at least 1, got {s}")
        for size, dim in zip(at.shape[1:], "HW"):
            if size + 2 * p < k or window_size(size, k, s, p) < 1:
                raise CnnlabError(
                    f"{at.where}: the kernel ({k}) is larger than its padded input ({size} + 2*{p}); "
                    f"{window_text(size, k, s, p, dim)}"
                )

    def out_shape(self, at: At) -> tuple:
        k, s, p = self.window(at)
        _, h, w = at.shape
        return self.channels(at), window_size(h, k, s, p), window_size(w, k, s, p)

    def arithmetic(self, at: At, out: tuple) -> str:
        k, s, p = self.window(at)
        return "; ".join(window_text(size, k, s, p, dim) for size, dim in zip(at.shape[1:], "HW"))


class Conv(Window):
    """A 2-D convolution: OUT filters of k x k over C/groups input channels each."""

    name = "conv"
    positional = ("out",)
    module_class = nn.Conv2d
    options = {"out": REQUIRED, "k": 3, "s": 1, "p": 0, "bias": 1, "groups": 1}

    def check(self, at: At) -> None:
        super().check(at)
        c, o = at.shape[0], at.opt
        if c % o["groups"] or o["out"] % o["groups"]:
            raise CnnlabError(
                f"{at.where}: groups={o['groups']} must divide both {c} input and {o['out']} output channels"
            )

    def channels(self, at: At) -> Any:
        return at.opt["out"]

    def module(self, at: At, out: tuple) -> nn.Module:
        o = at.opt
        return nn.Conv2d(at.shape[0], o["out"], o["k"], o["s"], o["p"], bias=bool(o["bias"]), groups=o["groups"])

    def counts(self, at: At, out: tuple) -> Counts:
        k = at.opt["k"]
        weights = out[0] * at.shape[0] * k * k // at.opt["groups"]  # each output sees C/groups input channels
        return with_bias(out, weights, weights * out[1] * out[2], at.opt["bias"])


class DepthwiseConv(Window):
    """One k x k filter per input channel, as many outputs as inputs: the first half of a separable convolution."""

    name = "dwconv"
    module_class = nn.Conv2d
    options = {"k": 3, "s": 1, "p": 0, "bias": 1}

    def module(self, at: At, out: tuple) -> nn.Module:
        c, o = at.shape[0], at.opt
        return nn.Conv2d(c, c, o["k"], o["s"], o["p"], bias=bool(o["bias"]), groups=c)

    def counts(self, at: At, out: tuple) -> Counts:
        weights = out[0] * at.opt["k"] * at.opt["k"]
        return with_bias(out, weights, weights * out[1] * out[2], at.opt["bias"])


class Pool(Window):
    """Max or average pooling; the stride defaults to the window."""

    positional = ("k",)
    options = {"k": 2, "s": None, "p": 0}

    def __init__(self, name: str, module_class: type[nn.Module]):
        self.name, self.module_class = name, module_class

    def module(self, at: At, out: tuple) -> nn.Module:
        return self.module_class(*self.window(at))


def transposed_counts(at: At, out: tuple, k, bias) -> Counts:
    """A transposed convolution: every input value meets every weight of its channel."""
    c, h, w = at.shape
    weights = c * out[0] * k * k
    return with_bias(out, weights, weights * h * w, bias)


class ConvTranspose(LayerKind):
    """A transposed convolution: (W - 1)*S - 2P + F in H and W."""

    name = "convT"
    positional = ("out",)
    needs = "image"
    module_class = nn.ConvTranspose2d
    options = {"out": REQUIRED, "k": 2, "s": 2, "p": 0, "bias": 1}

    def out_shape(self, at: At) -> tuple:
        _, h, w = at.shape
        o = at.opt
        return o["out"], transposed_size(h, o["k"], o["s"], o["p"]), transposed_size(w, o["k"], o["s"], o["p"])

    def arithmetic(self, at: At, out: tuple) -> str:
        o = at.opt
        return "; ".join(transposed_text(size, o["k"], o["s"], o["p"], dim) for size, dim in zip(at.shape[1:], "HW"))

    def module(self, at: At, out: tuple) -> nn.Module:
        o = at.opt
        return nn.ConvTranspose2d(at.shape[0], o["out"], o["k"], o["s"], o["p"], bias=bool(o["bias"]))

    def counts(self, at: At, out: tuple) -> Counts:
        return transposed_counts(at, out, at.opt["k"], at.opt["bias"])


class Upsample(LayerKind):
    """x`scale` in H and W: nearest, bilinear, or learned (a transposed convolution with as many channels out as in)."""

    name = "upsample"
    positional = ("scale",)
    words = frozenset({"mode"})
    needs = "image"
    options = {"scale": 2, "mode": None}  # mode None: the model's upsample option

    def learned(self, at: At) -> bool:
        return at.opt["mode"] == "transposed"

    def check(self, at: At) -> None:
        if at.opt["mode"] not in UPSAMPLE_MODES:
            raise CnnlabError(f"{at.where}: mode must be {', '.join(UPSAMPLE_MODES[:-1])} or {UPSAMPLE_MODES[-1]}")

    def out_shape(self, at: At) -> tuple:
        c, h, w = at.shape
        return c, h * at.opt["scale"], w * at.opt["scale"]

    def arithmetic(self, at: At, out: tuple) -> str:
        f = at.opt["scale"]
        return f"H, W: x{f} (transposed convolution k{f} s{f})" if self.learned(at) else f"H, W: x{f}"

    def module(self, at: At, out: tuple) -> nn.Module:
        f, mode = at.opt["scale"], at.opt["mode"]
        if self.learned(at):
            return nn.ConvTranspose2d(at.shape[0], at.shape[0], f, f)
        return nn.Upsample(scale_factor=f, mode=mode, align_corners=False if mode == "bilinear" else None)

    def resolve(self, layer: Layer, options) -> Optional[Layer]:
        if layer.options["mode"] is None:
            return replace(layer, options={**layer.options, "mode": options.upsample})
        return layer

    def type_name(self, at: At) -> str:
        return (nn.ConvTranspose2d if self.learned(at) else nn.Upsample).__name__

    def counts(self, at: At, out: tuple) -> Counts:
        if self.learned(at):
            return transposed_counts(at, out, at.opt["scale"], 1)  # torch's default: with bias
        return Counts()


class Flatten(LayerKind):
    """C x H x W values made one feature vector (a view: no new memory)."""

    name = "flatten"
    new_memory = False
    module_class = nn.Flatten

    def out_shape(self, at: At) -> tuple:
        return (prod(at.shape),)

    def arithmetic(self, at: At, out: tuple) -> str:
        return " * ".join(map(str, at.shape)) + f" = {out[0]} features"

    def module(self, at: At, out: tuple) -> nn.Module:
        return nn.Flatten()

    def remember(self, at: At) -> None:
        at.walk.pre_flatten = at.shape


class GlobalPool(LayerKind):
    """`gap`: the mean of each channel over H and W, one feature per channel."""

    name = "gap"
    needs = "image"
    module_class = modules.GlobalAvgPool

    def out_shape(self, at: At) -> tuple:
        return (at.shape[0],)

    def arithmetic(self, at: At, out: tuple) -> str:
        c, h, w = at.shape
        return f"mean over {h}x{w} -> {c} features"

    def module(self, at: At, out: tuple) -> nn.Module:
        return modules.GlobalAvgPool()


class Dense(LayerKind):
    """A linear layer on a flat input."""

    name = "dense"
    positional = ("out",)
    needs = "flat"
    module_class = nn.Linear
    options = {"out": REQUIRED, "bias": 1, "in": None}  # in: the feature count the author expects (checked)

    def check(self, at: At) -> None:
        expected, got = at.opt["in"], at.shape[0]
        if expected is not None and expected != got:
            before = at.walk.pre_flatten or at.shape
            raise CnnlabError(
                f"{at.where}: expects {expected} input features but the layer before gives {got} "
                f"(flatten: {' * '.join(map(str, before))} = {got}); "
                f"change 'in={expected}' to 'in={got}' or the layers before it"
            )

    def out_shape(self, at: At) -> tuple:
        return (at.opt["out"],)

    def arithmetic(self, at: At, out: tuple) -> str:
        return f"{at.shape[0]} -> {out[0]}"

    def module(self, at: At, out: tuple) -> nn.Module:
        return nn.Linear(at.shape[0], out[0], bias=bool(at.opt["bias"]))

    def counts(self, at: At, out: tuple) -> Counts:
        weights = at.shape[0] * out[0]
        return with_bias(out, weights, weights, at.opt["bias"])


class BatchNorm(LayerKind):
    """A slot: kept or dropped by the model's `bn` option, moved after the activation by `bn_position`.
    `affine=0`: normalisation alone, without the learned scale and shift (torch's affine=False)."""

    name = "bn"
    options = {"affine": 1}

    def check(self, at: At) -> None:
        if at.opt["affine"] not in (0, 1):
            raise CnnlabError(f"{at.where}: affine={at.opt['affine']} must be 1 (learned scale and shift) or 0 (none)")

    def resolve(self, layer: Layer, options) -> Optional[Layer]:
        return layer if options.bn else None

    def module(self, at: At, out: tuple) -> nn.Module:
        return (nn.BatchNorm2d if len(at.shape) == 3 else nn.BatchNorm1d)(at.shape[0], affine=bool(at.opt["affine"]))

    def type_name(self, at: At) -> str:
        return "BatchNorm2d" if len(at.shape) == 3 else "BatchNorm1d"

    def counts(self, at: At, out: tuple) -> Counts:
        c, affine = at.shape[0], at.opt["affine"]
        return Counts(weights=c * affine, biases=c * affine, buffers=2 * c)  # gamma, beta; running mean and variance


class ActivationSlot(LayerKind):
    """`act`: made the model's activation (ModelOptions.activation) before building or counting."""

    name = "act"

    def resolve(self, layer: Layer, options) -> Optional[Layer]:
        return replace(layer, kind=options.activation)


class Activation(LayerKind):
    """One row of ACTIVATIONS: a shape-keeping module without parameters."""

    def __init__(self, name: str, module_class: type[nn.Module]):
        self.name, self.module_class = name, module_class

    def module(self, at: At, out: tuple) -> nn.Module:
        return self.module_class()


class Multiply(LayerKind):
    """`mul F`: every value times the constant F (e.g. 'mul 0.111' after the last dense layer: cooler logits)."""

    name = "mul"
    positional = ("factor",)
    module_class = modules.Mul
    options = {"factor": REQUIRED}

    def module(self, at: At, out: tuple) -> nn.Module:
        return modules.Mul(at.opt["factor"])


class Dropout(LayerKind):
    """A slot: its own p, or the model's dropout option (dropped when that is 0)."""

    name = "dropout"
    positional = ("p",)
    new_memory = False  # an identity at evaluation
    module_class = nn.Dropout
    options = {"p": None}

    def resolve(self, layer: Layer, options) -> Optional[Layer]:
        if layer.options["p"] is not None:
            return layer
        return replace(layer, options={"p": options.dropout}) if options.dropout else None

    def check(self, at: At) -> None:
        if not 0 <= at.opt["p"] < 1:
            raise CnnlabError(f"{at.where}: dropout p must be in [0, 1), got {at.opt['p']}")

    def module(self, at: At, out: tuple) -> nn.Module:
        return nn.Dropout(at.opt["p"])


class Save(LayerKind):
    """`save NAME`: remember the current tensor for a later `cat NAME` or `add NAME`."""

    name = "save"
    positional = ("name",)
    words = frozenset({"name"})
    new_memory = False
    module_class = modules.Save
    options = {"name": REQUIRED}

    def module(self, at: At, out: tuple) -> nn.Module:
        return modules.Save(at.opt["name"])

    def remember(self, at: At) -> None:
        at.walk.save(at.opt["name"], at.shape, at.layer.index)


class Skip(LayerKind):
    """Use a tensor kept by `save NAME`."""

    positional = ("name",)
    words = frozenset({"name"})
    options = {"name": REQUIRED}
    need = ""  # what the saved tensor must share with the current one, in words

    def fits(self, at: At) -> None:
        name = at.opt["name"]
        if name not in at.walk.saved:
            raise CnnlabError(f"{at.where}: nothing was saved as '{name}' before this layer; add 'save {name}' earlier")

    def saved(self, at: At) -> tuple:
        return at.walk.saved[at.opt["name"]].shape

    def matches(self, shape: tuple, saved: tuple) -> bool:
        return len(shape) == len(saved) and shape[-2:] == saved[-2:]

    def check(self, at: At) -> None:
        """Refuse a saved tensor that does not match, with both shapes and the arithmetic of every resize since."""
        name, saved = at.opt["name"], at.walk.saved[at.opt["name"]]
        if self.matches(at.shape, saved.shape):
            return
        since = [s for s in at.walk.steps if s.layer.index > saved.index and s.in_shape[-2:] != s.out_shape[-2:]]
        path = "; ".join(f"{s.layer.where()}: {s.arithmetic}" for s in since) or "no layer changed the size"
        raise CnnlabError(
            f"{at.where}: the skip '{name}' has shape {saved.shape} but the current tensor has {at.shape}; "
            f"{self.name} needs {self.need}. Since 'save {name}': {path}"
        )

    def module(self, at: At, out: tuple) -> nn.Module:
        return self.module_class(at.opt["name"])


class Cat(Skip):
    """U-Net skip: the saved tensor's channels appended to the current tensor's."""

    name = "cat"
    module_class = modules.Concat
    need = "the same height and width"

    def out_shape(self, at: At) -> tuple:
        return (at.shape[0] + self.saved(at)[0],) + tuple(at.shape[1:])

    def arithmetic(self, at: At, out: tuple) -> str:
        return f"channels: {at.shape[0]} + {self.saved(at)[0]} = {out[0]}"


class Add(Skip):
    """Residual skip: the saved tensor added to the current one."""

    name = "add"
    module_class = modules.Add
    need = "the same shape"

    def matches(self, shape: tuple, saved: tuple) -> bool:
        return shape == saved


KINDS: dict[str, LayerKind] = {
    kind.name: kind
    for kind in (
        Conv(),
        DepthwiseConv(),
        ConvTranspose(),
        Dense(),
        Pool("maxpool", nn.MaxPool2d),
        Pool("avgpool", nn.AvgPool2d),
        GlobalPool(),
        Flatten(),
        BatchNorm(),
        ActivationSlot(),
        *(Activation(name, cls) for name, cls in ACTIVATIONS.items()),
        Dropout(),
        Multiply(),
        Upsample(),
        Save(),
        Cat(),
        Add(),
    )
}


def kind_of(name: str, where: str) -> LayerKind:
    """The record of a layer kind; an unknown name is refused with every known kind listed."""
    if name not in KINDS:
        raise CnnlabError(
            f"{where}: unknown layer kind '{name}'{did_you_mean(name, KINDS)}; known kinds: {', '.join(KINDS)}"
        )
    return KINDS[name]
