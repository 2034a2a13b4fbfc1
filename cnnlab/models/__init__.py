"""Models: the spec language, the builder, and the zoo of study networks."""
from __future__ import annotations

from cnnlab.models.build import ModelOptions, SpecNet, build
from cnnlab.models.recipe import Recipe, from_config
from cnnlab.models.spec import names_in, parse_spec
from cnnlab.models.zoo import ZOO


def create_model(model_cfg, in_shape: tuple[int, int, int], classes: int) -> SpecNet:
    """Build the configured model (zoo name or spec) for inputs of `in_shape` and `classes` outputs."""
    return from_config(model_cfg, classes).build(in_shape)
