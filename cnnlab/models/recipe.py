"""A spec network before it is built: its layers, named values and options, shared by the builder and the formulas.

`create_model` (training) builds a recipe at the dataset's input size; `cnnlab summary` builds it at any
size, or counts it in formulas without building it at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cnnlab.errors import CnnlabError
from cnnlab.models.spec_builder import ModelOptions, SpecNet, build
from cnnlab.models.spec import Layer, names_in, parse_spec
from cnnlab.models.zoo import ZOO


@dataclass(frozen=True)
class Recipe:
    spec: str
    layers: tuple[Layer, ...]
    defaults: dict = field(default_factory=dict)  # values of named hyper-parameters when none is given
    given: dict = field(default_factory=dict)  # values given by the user (model.args, NAME=VALUE)
    options: ModelOptions = ModelOptions()

    @property
    def names(self) -> set[str]:
        return names_in(list(self.layers))

    @property
    def values(self) -> dict:
        return {**self.defaults, **self.given}

    def with_values(self, given: dict) -> "Recipe":
        unknown = set(given) - self.names
        if unknown:
            raise CnnlabError(
                f"the model does not use the name(s) {', '.join(sorted(unknown))}; "
                f"it uses: {', '.join(sorted(self.names)) or 'no names'}"
            )
        return replace(self, given={**self.given, **given})

    def build(self, in_shape: tuple[int, int, int], options: ModelOptions | None = None) -> SpecNet:
        values = {**self.values, "in_channels": in_shape[0]}  # the input decides its own channel count
        missing = sorted(self.names - set(values))
        if missing:
            raise CnnlabError(
                f"the spec uses {', '.join(missing)} without values; give them as NAME=VALUE (e.g. {missing[0]}=32)"
            )
        return build(list(self.layers), in_shape, values, options or self.options, spec_text=self.spec)


def from_spec(spec: str, defaults: dict | None = None, options: ModelOptions = ModelOptions()) -> Recipe:
    return Recipe(spec, tuple(parse_spec(spec)), dict(defaults or {}), {}, options)


def from_zoo(name: str) -> Recipe:
    entry = ZOO[name]
    return from_spec(entry.spec, entry.hyper, entry.options)


def from_config(model_cfg, classes: int) -> Recipe:
    """The recipe of a config's model section (zoo name or spec, args, options) for `classes` outputs."""
    base = from_zoo(model_cfg.name) if model_cfg.name is not None else from_spec(model_cfg.spec)
    options = ModelOptions(
        bn=base.options.bn if model_cfg.bn is None else model_cfg.bn,
        bn_position=model_cfg.bn_position,
        activation=model_cfg.activation or base.options.activation,
        dropout=base.options.dropout if model_cfg.dropout is None else model_cfg.dropout,
        init=model_cfg.init,
        upsample=model_cfg.upsample,
        bn_momentum=model_cfg.bn_momentum,
        bn_weight_frozen=model_cfg.bn_weight_frozen,
    )
    recipe = replace(base, options=options).with_values(dict(model_cfg.args))
    outputs = {"classes": classes}  # the dataset decides the class count
    if "NC" in recipe.names:  # the colourization networks name their outputs NC: the palette size
        if model_cfg.args.get("NC", classes) != classes:
            raise CnnlabError(
                f"model.args.NC={model_cfg.args['NC']} but the data has {classes} colours; "
                "NC is set by data.palette_size"
            )
        outputs["NC"] = classes
    return replace(recipe, given={**recipe.given, **outputs})
