"""Counting a spec in formulas: the table of `count`, in the spec's named hyper-parameters and the input size.

Each layer's formulas follow from its kind and the shape before it, by the builder's own shape rule
(`window_size`, which is floor((W - F + 2P)/S) + 1 on integers and on sympy expressions alike). This is
a second, independent route to the numbers: `count` reads them off the built torch module, and the
tests require the two to agree for random hyper-parameters.

The exact formulas keep floor(); the table shows them simplified under assumptions stated beside it
(a kernel padded by k//2 is odd; H and W are multiples of the network's total stride). Evaluating
(`--set`) always uses the exact formulas, so a value outside the assumptions still gets the right number.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace
from math import prod
from typing import Optional

import sympy as sp

from cnnlab.analysis.count import COUNT_COLUMNS, LayerCount, totals
from cnnlab.errors import CnnlabError
from cnnlab.models.build import ACTIVATION_MODULES, ModelOptions, apply_options, module_names, transposed_size, window_size
from cnnlab.models.spec import TEXT_OPTIONS, Layer, evaluate, names_in

BYTES = 4  # float32: the formulas count activation memory for float32 tensors

TYPES = {"conv": "Conv2d", "dwconv": "Conv2d", "convT": "ConvTranspose2d", "dense": "Linear", "maxpool": "MaxPool2d",
         "avgpool": "AvgPool2d", "gap": "GlobalAvgPool", "flatten": "Flatten", "dropout": "Dropout",
         "upsample": "Upsample", "save": "Save", "cat": "Concat", "add": "Add",
         **{kind: cls.__name__ for kind, cls in ACTIVATION_MODULES.items()}}
NO_NEW_MEMORY = ("flatten", "dropout", "save")  # a view, an identity at evaluation, an identity


def symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True, positive=True)


def _layer_formulas(layer: Layer, opt: dict, shape: tuple, saved: dict) -> tuple[tuple, LayerCount]:
    """(output shape, counts) of one layer from its options and input shape; names and type filled by the caller."""
    kind = layer.kind
    row = LayerCount("", "")
    bias = opt.get("bias", 0)
    if kind in ("conv", "dwconv", "maxpool", "avgpool"):
        c, h, w = shape
        k, p = opt["k"], opt["p"]
        s = opt["s"] if opt["s"] is not None else k
        out = (opt["out"] if kind == "conv" else c, window_size(h, k, s, p), window_size(w, k, s, p))
        if kind in ("conv", "dwconv"):
            per_output = (c / opt["groups"] if kind == "conv" else 1) * k * k  # weights feeding one output value
            row.weights = out[0] * per_output
            row.macs = row.weights * out[1] * out[2]
    elif kind == "convT":
        c, h, w = shape
        k, s, p = opt["k"], opt["s"], opt["p"]
        out = (opt["out"], transposed_size(h, k, s, p), transposed_size(w, k, s, p))
        row.weights = c * opt["out"] * k * k
        row.macs = row.weights * h * w  # every input value meets every weight of its channel
    elif kind == "dense":
        out = (opt["out"],)
        row.weights = shape[0] * opt["out"]
        row.macs = row.weights
    elif kind == "upsample":
        c, h, w = shape
        out = (c, h * opt["scale"], w * opt["scale"])
    elif kind == "flatten":
        out = (prod(shape),)
    elif kind == "gap":
        out = (shape[0],)
    elif kind == "bn":
        out = shape
        row.weights = row.biases = shape[0]  # scale gamma and shift beta
        row.buffers = 2 * shape[0]  # running mean and variance
    elif kind == "save":
        out = shape
        saved[opt["name"]] = shape
    elif kind == "cat":
        out = (shape[0] + saved[opt["name"]][0],) + tuple(shape[1:])
    else:  # activations, dropout, add: same shape
        out = shape
    if kind in ("conv", "dwconv", "convT", "dense"):
        row.biases = out[0] * bias
        row.bias_adds = prod(out) * bias
    row.params = row.trainable_params = row.weights + row.biases
    row.activation_bytes = 0 if kind in NO_NEW_MEMORY else BYTES * prod(out)
    return out, row


def formulas(layers: list[Layer], in_shape: tuple, values: dict, options: ModelOptions) -> list[LayerCount]:
    """Exact per-layer formulas. `values` maps names to sympy symbols or numbers; `in_shape` may hold symbols."""
    layers = apply_options(layers, options)
    shape = tuple(sp.sympify(d) for d in in_shape)
    saved: dict = {}
    rows = []
    for layer, name in zip(layers, module_names(layers)):
        opt = {k: v if k in TEXT_OPTIONS or v is None else sp.sympify(evaluate(v, values, layer.where()))
               for k, v in layer.options.items()}
        if layer.kind in ("cat", "add") and opt["name"] not in saved:
            raise CnnlabError(f"{layer.where()}: nothing was saved as '{opt['name']}' before this layer")
        out, row = _layer_formulas(layer, opt, shape, saved)
        kind_type = TYPES.get(layer.kind) or ("BatchNorm2d" if len(shape) == 3 else "BatchNorm1d")
        rows.append(replace(row, name=name, type=kind_type, input_shape=list(shape), output_shape=list(out)))
        shape = out
    return rows


# ---- assumptions and display --------------------------------------------------------------------


def odd_names(layers: list[Layer]) -> set[str]:
    """Names used as `NAME//2` in a padding: the 'same' padding idiom, which keeps the size for odd kernels."""
    found = set()
    for layer in layers:
        p = layer.options.get("p")
        if isinstance(p, str):
            tree = ast.parse(p, mode="eval").body
            if isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.FloorDiv) and isinstance(tree.left, ast.Name) \
                    and isinstance(tree.right, ast.Constant) and tree.right.value == 2:
                found.add(tree.left.id)
    return found


def total_stride(layers: list[Layer], values: dict) -> Optional[int]:
    """The product of the strides of the layers that shrink the image (None if a stride is a name)."""
    total = 1
    for layer in layers:
        if layer.kind in ("conv", "dwconv", "maxpool", "avgpool"):
            s = layer.options["s"] if layer.options["s"] is not None else layer.options["k"]
            s = sp.sympify(evaluate(s, values, layer.where()))
            if not s.is_Integer:
                return None
            total *= int(s)
    return total


@dataclass
class Assumptions:
    """What the simplified formulas assume: some names odd, some multiples of a number."""

    odd: list[sp.Symbol] = field(default_factory=list)
    multiple: dict[sp.Symbol, int] = field(default_factory=dict)

    def text(self) -> str:
        parts = [f"{s} odd" for s in self.odd]
        by: dict[int, list[str]] = {}
        for s, d in self.multiple.items():
            by.setdefault(d, []).append(str(s))
        parts += [f"{' and '.join(names)} multiples of {d}" for d, names in by.items()]
        return ", ".join(parts)

    def holds(self, values: dict) -> bool:
        odd = all(int(values[str(s)]) % 2 == 1 for s in self.odd if str(s) in values)
        return odd and all(int(values[str(s)]) % d == 0 for s, d in self.multiple.items() if str(s) in values)

    def substitutions(self) -> tuple[dict, dict]:
        """(into, back): odd k = 2j + 1 and H = d*h make every floor exact; `back` returns to k and H."""
        into, back = {}, {}
        for s in self.odd:
            j = sp.Symbol(f"{s.name}_half", integer=True, nonnegative=True)
            into[s], back[j] = 2 * j + 1, (s - 1) / 2
        for s, d in self.multiple.items():
            j = sp.Symbol(f"{s.name}_{d}", integer=True, positive=True)
            into[s], back[j] = d * j, s / d
        return into, back


def tidy(expr):
    """A readable form: a product stays factored (NF*k^2*H*W/4); a sum is expanded (3*NC + 12*NF)."""
    expr = sp.sympify(expr)
    if expr.is_number or expr.is_Symbol:
        return expr
    factored = sp.factor(expr)
    coeff, rest = factored.as_coeff_Mul()
    return expr.expand() if rest.is_Add else factored


def assumptions_for(layers: list[Layer], values: dict, in_shape: tuple) -> Assumptions:
    odd = [values[n] for n in sorted(odd_names(layers)) if isinstance(values.get(n), sp.Symbol)]
    stride = total_stride(layers, values)
    multiple = {}
    if stride and stride > 1:
        multiple = {d: stride for d in in_shape[1:] if isinstance(d, sp.Symbol)}
    return Assumptions(odd, multiple)


def parse_dim(d):
    """An input dimension: an integer, or a name (kept as text until values are known)."""
    return d if isinstance(d, int) else (int(d) if str(d).isdigit() else str(d))


@dataclass
class SpecFormulas:
    """A spec's table in formulas: the names not given stay symbols; the input may hold names (1xHxW)."""

    layers: list[Layer]
    in_shape: tuple  # ints and names
    given: dict  # name -> int
    options: ModelOptions

    def values(self, numbers: dict) -> tuple[dict, tuple]:
        names = names_in(self.layers) | {d for d in self.in_shape if isinstance(d, str)}
        values = {n: numbers[n] if n in numbers else symbol(n) for n in names}
        shape = tuple(values[d] if isinstance(d, str) else d for d in self.in_shape)
        values.setdefault("in_channels", shape[0])
        return values, shape

    def assumptions(self) -> Assumptions:
        values, shape = self.values(self.given)
        return assumptions_for(self.layers, values, shape)

    def rows(self, assume: Optional[Assumptions] = None) -> tuple[list[LayerCount], dict]:
        """Simplified rows and totals, exact wherever `assume` holds (the default: this spec's own assumptions)."""
        assume = assume or self.assumptions()
        values, shape = self.values(self.given)
        into, back = assume.substitutions()
        def put(e):
            return sp.sympify(e).subs(into, simultaneous=True) if into else e

        rows = formulas(self.layers, tuple(put(d) for d in shape), {n: put(v) for n, v in values.items()}, self.options)
        tot = totals(rows)

        def show(e):
            return tidy(sp.sympify(e).subs(back, simultaneous=True)) if back else tidy(e)

        shown = [replace(r, output_shape=[show(d) for d in r.output_shape], **{c: show(getattr(r, c)) for c in COUNT_COLUMNS})
                 for r in rows]
        return shown, {c: show(v) for c, v in tot.items()}

    def evaluate(self, numbers: dict) -> list[LayerCount]:
        """The exact formulas at numbers for every name (floors and all): integer rows."""
        values, shape = self.values({**self.given, **numbers})
        rows = formulas(self.layers, shape, values, self.options)
        return [replace(r, output_shape=[as_int(d) for d in r.output_shape], input_shape=[as_int(d) for d in r.input_shape],
                        **{c: as_int(getattr(r, c)) for c in COUNT_COLUMNS}) for r in rows]


def as_int(value) -> int:
    """An evaluated cell as an int (it must have no names left)."""
    value = sp.sympify(value)
    if value.free_symbols:
        names = ", ".join(sorted(map(str, value.free_symbols)))
        raise CnnlabError(f"the formula {value} still has names without values: {names}; give them with --set NAME=VALUE")
    return int(value)
