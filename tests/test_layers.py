"""The layer-kind records: every kind and every activation written once, and what reads them agrees with torch."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from cnnlab.analysis.count import COUNT_COLUMNS, count
from cnnlab.analysis.symbolic import SpecFormulas
from cnnlab.config import validate
from cnnlab.errors import CnnlabError
from cnnlab.models.spec_builder import ModelOptions, build
from cnnlab.models.layer_kinds import ACTIVATIONS, KINDS
from cnnlab.models.recipe import from_spec, from_zoo
from cnnlab.models.spec import parse_spec


def same_counts(recipe, shape, options):
    """The evaluated formulas of `recipe` equal the counts read off the built module, cell by cell."""
    real = count(recipe.build(shape, options), shape)
    numbers = {"C": shape[0], "H": shape[1], "W": shape[2], **recipe.values}
    formulas = SpecFormulas(list(recipe.layers), ("C", "H", "W"), {}, options).evaluate(numbers)
    assert [(r.name, r.type, r.output_shape) for r in formulas] == [(r.name, r.type, r.output_shape) for r in real]
    for f, r in zip(formulas, real):
        assert {c: getattr(f, c) for c in COUNT_COLUMNS} == {c: getattr(r, c) for c in COUNT_COLUMNS}, f.name


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_is_a_kind_a_config_value_and_a_counted_module(name):
    assert name in KINDS
    cfg = validate({"model": {"name": "fast_a", "activation": name}}, "exp.yaml")
    net = build(
        parse_spec("conv 4 k3 -> act -> flatten -> dense 2"),
        (1, 6, 6),
        {},
        ModelOptions(activation=cfg.model.activation),
    )
    assert isinstance(net.get_submodule(f"{name}1"), ACTIVATIONS[name])
    same_counts(from_spec(f"conv 4 k3 -> {name} -> flatten -> dense 2"), (1, 6, 6), ModelOptions())


def test_an_unknown_activation_lists_the_table():
    with pytest.raises(CnnlabError) as e:
        validate({"model": {"name": "fast_a", "activation": "swish"}}, "exp.yaml")
    assert "'relu'" in str(e.value) and "'leaky_relu'" in str(e.value)


def test_learned_upsampling_is_counted_as_the_transposed_convolution_it_builds():
    recipe = from_zoo("seg_unet").with_values({"NF": 2})
    options = replace(recipe.options, upsample="transposed")
    net = recipe.build((3, 32, 32), options)
    assert isinstance(net.upsample1, torch.nn.ConvTranspose2d)
    same_counts(recipe, (3, 32, 32), options)


def test_every_kind_builds_and_counts_as_torch_does():
    spec = """save x -> conv 6 k3 p1 groups=2 -> bn -> elu -> dwconv k3 p1 bias=0 -> conv 2 k1 -> add x
              save y -> maxpool 3 s2 p1 -> avgpool 2 -> convT 4 k2 s2 -> upsample 2 mode=bilinear -> cat y
              act -> gap -> flatten -> dropout 0.5 -> bn -> dense 3 -> mul 0.5"""
    recipe = from_spec(spec)
    assert {layer.kind for layer in recipe.layers} >= set(KINDS) - set(ACTIVATIONS)
    same_counts(recipe, (2, 12, 12), ModelOptions())


def test_a_stride_of_zero_is_refused_before_torch_divides_by_it():
    with pytest.raises(CnnlabError, match="layer 1 'maxpool 2 s0': s is 0; it must be a whole number from 1"):
        build(parse_spec("maxpool 2 s0"), (1, 6, 6), {}, ModelOptions())
