"""Models: the spec language, the builder, the zoo of study networks, and recipes that tie them to a config."""

from __future__ import annotations

from torch import nn

from cnnlab.models import user
from cnnlab.models.recipe import from_config


def create_model(model_cfg, in_shape: tuple[int, int, int], classes: int, dense: bool = False) -> nn.Module:
    """Build the configured model (zoo name, spec or the user's own module) for inputs of `in_shape` and `classes`
    outputs (per pixel when `dense`); the user's module is checked to return that shape."""
    if user.is_user_model(model_cfg.name):
        model = user.build(model_cfg.name, dict(model_cfg.args), in_shape[0], classes)
        user.check_output(model, model_cfg.name, in_shape, classes, dense)
        return model
    return from_config(model_cfg, classes).build(in_shape)
