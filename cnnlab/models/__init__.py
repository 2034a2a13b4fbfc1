"""Models: the spec language, the builder, and the zoo of study networks."""
from __future__ import annotations

from cnnlab.errors import CnnlabError
from cnnlab.models.build import ModelOptions, SpecNet, build
from cnnlab.models.spec import names_in, parse_spec
from cnnlab.models.zoo import ZOO


def create_model(model_cfg, in_shape: tuple[int, int, int], classes: int) -> SpecNet:
    """Build the configured model (zoo name or spec) for inputs of `in_shape` and `classes` outputs."""
    if model_cfg.name is not None:
        entry = ZOO[model_cfg.name]
        spec, hyper, base = entry.spec, dict(entry.hyper), entry.options
    else:
        spec, hyper, base = model_cfg.spec, {}, ModelOptions()
    options = ModelOptions(
        bn=base.bn if model_cfg.bn is None else model_cfg.bn,
        bn_position=model_cfg.bn_position,
        activation=model_cfg.activation or base.activation,
        dropout=base.dropout if model_cfg.dropout is None else model_cfg.dropout,
        init=model_cfg.init,
        upsample=model_cfg.upsample,
    )
    layers = parse_spec(spec)
    outputs = {"classes": classes}
    if "NC" in names_in(layers):  # the colourization networks name their outputs NC, the palette size
        if model_cfg.args.get("NC", classes) != classes:
            raise CnnlabError(f"model.args.NC={model_cfg.args['NC']} but the data has {classes} colours; "
                              "NC is set by data.palette_size")
        outputs["NC"] = classes
    values = {**hyper, **model_cfg.args, **outputs, "in_channels": in_shape[0]}
    unknown = set(model_cfg.args) - names_in(layers)
    if unknown:
        raise CnnlabError(
            f"model.args names {', '.join(sorted(unknown))}, which the spec does not use; "
            f"it uses: {', '.join(sorted(names_in(layers))) or 'no names'}"
        )
    return build(layers, in_shape, values, options, spec_text=spec)
