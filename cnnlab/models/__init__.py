"""Models: the spec language, the builder, the zoo of study networks, and recipes that tie them to a config."""
from __future__ import annotations

from cnnlab.models.spec_builder import SpecNet
from cnnlab.models.recipe import from_config


def create_model(model_cfg, in_shape: tuple[int, int, int], classes: int) -> SpecNet:
    """Build the configured model (zoo name or spec) for inputs of `in_shape` and `classes` outputs."""
    return from_config(model_cfg, classes).build(in_shape)
