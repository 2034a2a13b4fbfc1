"""Counting a spec in formulas: the table of `count`, in the spec's named hyper-parameters and the input size.

Each layer's formulas follow from its kind and the shape before it, by its record in
`cnnlab.models.layer_kinds`: the builder's own shape rule (floor((W - F + 2P)/S) + 1, on integers and on sympy
expressions alike) and the record's counts. This is a second, independent route to the numbers: `count`
reads them off the built torch module, and the tests require the two to agree for random hyper-parameters.

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
from cnnlab.models.spec_builder import ModelOptions, apply_options, module_names
from cnnlab.models.layer_kinds import KINDS
from cnnlab.models.spec import Layer, evaluate, names_in
from cnnlab.models.walk import At, ShapeWalk

BYTES = 4  # float32: the formulas count activation memory for float32 tensors


def symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True, positive=True)


def _row(name: str, at: At, out: tuple) -> LayerCount:
    """One layer's row, from its record's counts."""
    counts = at.kind.counts(at, out)
    params = counts.weights + counts.biases
    return LayerCount(
        name,
        at.kind.type_name(at),
        output_shape=list(out),
        input_shape=list(at.shape),
        weights=counts.weights,
        biases=counts.biases,
        params=params,
        trainable_params=params,
        buffers=counts.buffers,
        macs=counts.macs,
        bias_adds=counts.bias_adds,
        activation_bytes=BYTES * prod(out) if at.kind.new_memory else 0,
    )


def formulas(layers: list[Layer], in_shape: tuple, values: dict, options: ModelOptions) -> list[LayerCount]:
    """Exact per-layer formulas. `values` maps names to sympy symbols or numbers; `in_shape` may hold symbols."""
    layers = apply_options(layers, options)
    walk = ShapeWalk(tuple(sp.sympify(d) for d in in_shape))
    rows = []
    for layer, name in zip(layers, module_names(layers)):
        at = walk.enter(layer, values, number=sp.sympify)
        out = at.kind.out_shape(at)
        rows.append(_row(name, at, out))
        walk.leave(at, out)
    return rows


# ---- assumptions and display --------------------------------------------------------------------


def odd_names(layers: list[Layer]) -> set[str]:
    """Names used as `NAME//2` in a padding: the 'same' padding idiom, which keeps the size for odd kernels."""
    found = set()
    for layer in layers:
        p = layer.options.get("p")
        if isinstance(p, str):
            tree = ast.parse(p, mode="eval").body
            if (
                isinstance(tree, ast.BinOp)
                and isinstance(tree.op, ast.FloorDiv)
                and isinstance(tree.left, ast.Name)
                and isinstance(tree.right, ast.Constant)
                and tree.right.value == 2
            ):
                found.add(tree.left.id)
    return found


def total_stride(layers: list[Layer], values: dict) -> Optional[int]:
    """The product of the strides of the layers that shrink the image (None if a stride is a name)."""
    total = 1
    for layer in layers:
        s = sp.sympify(evaluate(KINDS[layer.kind].shrink(layer.options), values, layer.where()))
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

        shown = [
            replace(
                r, output_shape=[show(d) for d in r.output_shape], **{c: show(getattr(r, c)) for c in COUNT_COLUMNS}
            )
            for r in rows
        ]
        return shown, {c: show(v) for c, v in tot.items()}

    def evaluate(self, numbers: dict) -> list[LayerCount]:
        """The exact formulas at numbers for every name (floors and all): integer rows."""
        values, shape = self.values({**self.given, **numbers})
        rows = formulas(self.layers, shape, values, self.options)
        return [
            replace(
                r,
                output_shape=[as_int(d) for d in r.output_shape],
                input_shape=[as_int(d) for d in r.input_shape],
                **{c: as_int(getattr(r, c)) for c in COUNT_COLUMNS},
            )
            for r in rows
        ]


def as_int(value) -> int:
    """An evaluated cell as an int (it must have no names left)."""
    value = sp.sympify(value)
    if value.free_symbols:
        names = ", ".join(sorted(map(str, value.free_symbols)))
        raise CnnlabError(
            f"the formula {value} still has names without values: {names}; give them with --set NAME=VALUE"
        )
    return int(value)
