"""Formulas against the real module: for every spec in the zoo, random hyper-parameters, input sizes and
options (batch norm on/off and where, separable convolutions), the evaluated formulas equal the counts
read off the instantiated torch module, in every column. Also some formulas written out by hand.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import pytest
import sympy as sp
from torch import nn
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnlab.analysis.count import COUNT_COLUMNS, count, totals
from cnnlab.analysis.network_summary import Options, summarise
from cnnlab.analysis.symbolic import SpecFormulas, symbol
from cnnlab.analysis.whatif import WhatIf, separable_spec
from cnnlab.errors import CnnlabError
from cnnlab.models.recipe import from_zoo
from cnnlab.analysis.subject import resolve
from cnnlab.models.zoo import ZOO

INPUT = ("C", "H", "W")
RANGES = {"NF": (1, 8), "NC": (1, 8), "k": (1, 5), "classes": (1, 60)}


@lru_cache(maxsize=None)
def shown_formulas(name: str, bn: bool, position: str):
    """The simplified formulas (computed once per model and options) and the assumptions they hold under."""
    recipe = from_zoo(name)
    options = replace(recipe.options, bn=bn, bn_position=position)
    f = SpecFormulas(list(recipe.layers), INPUT, {}, options)
    rows, total = f.rows()
    return rows, total, f.assumptions()


def evaluated(value, numbers: dict) -> int:
    return int(sp.sympify(value).subs({symbol(k): v for k, v in numbers.items()}))


def same_rows(formula_rows, real_rows, numbers=None):
    """Every cell equal; `numbers` given: the formula cells are evaluated at them first."""
    ev = (lambda v: evaluated(v, numbers)) if numbers is not None else int
    assert [(r.name, r.type) for r in formula_rows] == [(r.name, r.type) for r in real_rows]
    for f, r in zip(formula_rows, real_rows):
        assert [ev(d) for d in f.output_shape] == r.output_shape, f.name
        for column in COUNT_COLUMNS:
            assert ev(getattr(f, column)) == getattr(r, column), (f.name, column)


@pytest.mark.parametrize("name", list(ZOO))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(data=st.data())
def test_formulas_equal_the_built_module(name, data):
    recipe = from_zoo(name)
    values = {n: data.draw(st.integers(*RANGES[n]), label=n) for n in sorted(recipe.names)}
    size = st.one_of(st.integers(2, 12).map(lambda h: 4 * h), st.integers(6, 48))
    numbers = {
        "C": data.draw(st.integers(1, 3), label="C"),
        "H": data.draw(size, label="H"),
        "W": data.draw(size, label="W"),
        **values,
    }
    bn, position = (
        data.draw(st.booleans(), label="bn"),
        data.draw(st.sampled_from(["before", "after"]), label="bn_position"),
    )
    separable = data.draw(st.booleans(), label="separable")
    options = replace(recipe.options, bn=bn, bn_position=position)
    layers = list(recipe.layers)
    if separable:
        layers, _ = separable_spec(layers, {**values, "in_channels": numbers["C"]}, options)
    shape = (numbers["C"], numbers["H"], numbers["W"])
    try:
        model = replace(recipe, layers=tuple(layers)).with_values(values).build(shape, options)
    except CnnlabError:
        assume(False)  # the sizes do not fit this network (the builder says why; tested elsewhere)
    real = count(model, shape)

    # the exact formulas (floors and all), evaluated: what --set gives, for any values
    exact = SpecFormulas(layers, INPUT, {}, options).evaluate(numbers)
    same_rows(exact, real)

    # the simplified formulas of the table, wherever their stated assumptions hold
    if not separable:
        rows, total, assumptions = shown_formulas(name, bn, position)
        if assumptions.holds(numbers):
            same_rows(rows, real, numbers)
            assert {c: evaluated(v, numbers) for c, v in total.items()} == totals(real)


def test_colour_cnn_formulas_by_hand():
    rows, total, assumptions = shown_formulas("colour_cnn", True, "before")
    NF, NC, k, C, H, W = (symbol(n) for n in ("NF", "NC", "k", "C", "H", "W"))
    by_name = {r.name: r for r in rows}
    conv2 = by_name["conv2"]  # NF -> 2NF channels at H/2 x W/2
    assert sp.simplify(conv2.weights - 2 * NF * NF * k**2) == 0
    assert sp.simplify(conv2.macs - 2 * NF * NF * k**2 * (H / 2) * (W / 2)) == 0
    assert sp.simplify(by_name["maxpool2"].activation_bytes - 4 * 2 * NF * (H / 4) * (W / 4)) == 0
    assert by_name["bn3"].buffers == 2 * (2 * NF) and by_name["maxpool1"].macs == 0
    assert [sp.simplify(d) for d in by_name["upsample2"].output_shape] == [NC, H, W]
    conv_weights = k**2 * (C * NF + NF * 2 * NF + 2 * NF * 2 * NF + 2 * NF * NF + NF * NC + NC * NC)
    conv_biases = NF + 2 * NF + 2 * NF + NF + NC + NC
    bn_params = 2 * (NF + 2 * NF + 2 * NF + NF + NC)
    assert sp.simplify(total["params"] - (conv_weights + conv_biases + bn_params)) == 0
    assert assumptions.text() == "k odd, H and W multiples of 4"


def test_symbolic_summary_evaluated_checks_itself():
    opts = Options(symbolic=True, given={"NF": 8, "NC": 5, "k": 3, "H": 16, "W": 16})
    result = summarise(resolve("colour_unet"), (1, "H", "W"), opts)
    assert any(
        n.startswith("checked: the formulas at these values equal the counts of the built torch module")
        for n in result.base.notes
    )


def test_symbolic_separable_speedup_is_the_formula():
    result = summarise(
        resolve("colour_cnn", ["k=3"]), (1, "H", "W"), Options(symbolic=True, whatif=WhatIf(separable=True))
    )
    NF = symbol("NF")
    first = result.converted[0]
    base = {r.name: r for r in result.base.rows}
    var = {r.name: r for r in result.variant.rows}
    exact = sp.simplify(base[first.name].macs / sum(var[n].macs for n in first.parts))
    assert sp.simplify(exact - 9 * NF / (9 + NF)) == 0  # k^2 Cout / (k^2 + Cout) with k = 3, Cout = NF


def test_batch_norm_without_affine_parameters():
    """`bn affine=0` is torch's BatchNorm2d(C, affine=False): no scale or shift (0 parameters), 2C running
    statistics; its formulas say the same and equal the built module's counts."""
    from cnnlab.models.recipe import from_spec

    spec = "conv NF k3 p1 -> bn affine=0 -> elu -> flatten -> dense 10"
    model = from_spec(spec, {"NF": 32}).build((3, 8, 8))
    assert isinstance(model.bn1, nn.BatchNorm2d) and not model.bn1.affine and model.bn1.weight is None
    real = count(model, (3, 8, 8))
    bn = next(r for r in real if r.name == "bn1")
    assert (bn.params, bn.weights, bn.biases, bn.buffers) == (0, 0, 0, 64)
    recipe = from_spec(spec, {})
    formulas = SpecFormulas(list(recipe.layers), INPUT, {}, recipe.options)
    rows, _ = formulas.rows()
    bn_formula = next(r for r in rows if r.name == "bn1")
    assert (bn_formula.params, sp.simplify(bn_formula.buffers - 2 * symbol("NF"))) == (0, 0)
    same_rows(formulas.evaluate({"NF": 32, "C": 3, "H": 8, "W": 8}), real)
    with pytest.raises(CnnlabError, match="affine=2 must be 1"):
        from_spec("conv 4 -> bn affine=2", {}).build((3, 8, 8))
