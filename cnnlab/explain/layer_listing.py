"""Every module of a network by the name the other options take, its type and output shape, and which
convolutions `first` and `last` stand for.

Shapes come from one forward pass with a hook on every module, on the `meta` device (shapes only, no
arithmetic; the real device when a network cannot run there). `first` is the first `Conv2d` executed.
`last` is the output of the last `Conv2d` executed, named by its outermost enclosing module that ends
with it unchanged in shape: for a spec network (flat) that is the convolution itself (e.g. `conv3`),
for torchvision's ResNet-18 it is `layer4` (512x8x8 at 256x256), which holds `layer4.1.conv2` and
whose output is that convolution's after batch norm, the residual addition and ReLU, the map that
Grad-CAM and the study call the last convolution's. Definition order is not used: a module defined
early can run late.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import nn

from cnnlab.analysis.count import hooked, model_device, run_with_stand_ins
from cnnlab.errors import CnnlabError, close_names
from cnnlab.explain.hooks import evaluating

ALIASES = ("first", "last")


@dataclass
class LayerRow:
    """One module: `output_shapes` has one (C, H, W)-like shape per call (batch left out), none if it did not run."""

    name: str
    type: str
    is_conv: bool
    output_shapes: list = field(default_factory=list)

    @property
    def ran(self) -> bool:
        return bool(self.output_shapes)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class LayerListing:
    """The rows in order of first execution (modules that never ran at the end), and the default convolutions."""

    rows: list[LayerRow]
    input_shape: tuple
    first: Optional[str]  # the first Conv2d executed
    last: Optional[str]  # the module whose output is the last Conv2d's (see the module docstring)
    last_conv: Optional[str]  # the last Conv2d executed itself
    last_spatial: Optional[str] = None  # as `last`, for the last Conv2d whose map is larger than 1x1 (None: none is)

    def map_size(self, name: str) -> Optional[str]:
        """'HxW' of a layer's last output map, None if it gives no (C, H, W) map."""
        shapes = next((row.output_shapes for row in self.rows if row.name == name), [])
        return "x".join(map(str, shapes[-1][1:])) if shapes and shapes[-1] and len(shapes[-1]) == 3 else None

    def one_pixel_note(self, name: str) -> str:
        """Why a 1x1 map shows nothing and which layer does (empty for larger maps)."""
        if self.map_size(name) != "1x1":
            return ""
        where = (
            f"the last layer with a larger map is {self.last_spatial} ({self.map_size(self.last_spatial)})"
            if self.last_spatial
            else "no convolution keeps a map larger than 1x1 at this input size"
        )
        return f"a 1x1 map: each channel is one number, so it cannot show where anything is; {where}"

    def resolve(self, name: str) -> str:
        """A layer name as given, with `first` and `last` replaced by the names they stand for."""
        if name in ALIASES:
            picked = getattr(self, name)
            if picked is None:
                raise CnnlabError(
                    f"the model runs no Conv2d, so there is no '{name}' convolution; "
                    "name a layer instead (see `cnnlab layers`)"
                )
            return picked
        names = [row.name for row in self.rows]
        if name not in names:
            raise unknown_layer(name, names)
        return name

    def as_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "first": self.first,
            "last": self.last,
            "last_conv": self.last_conv,
            "last_spatial": self.last_spatial,
            "layers": [row.as_dict() for row in self.rows],
        }


def unknown_layer(name: str, names: list[str]) -> CnnlabError:
    """The message for a layer name the model does not have: the closest names, and where to see them all."""
    close = close_names(name, list(names) + list(ALIASES), n=5)
    hint = (
        f"the closest names: {', '.join(close)}"
        if close
        else f"names look like: {', '.join(n for n in names[:6] if n)}"
    )
    return CnnlabError(f"the model has no layer named '{name}'; {hint}; see `cnnlab layers` for every name")


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called `name` (any of its names when it is registered under several)."""
    modules = dict(model.named_modules(remove_duplicate=False))
    if name not in modules or not name:
        raise unknown_layer(name, list(modules))
    return modules[name]


def _shape(output) -> Optional[list]:
    return list(output.shape[1:]) if isinstance(output, torch.Tensor) else None


def _trace(model: nn.Module, input_shape: tuple) -> tuple[dict[str, list], list[str]]:
    """({name: output shapes per call}, names of every module call in execution order) for one input."""
    names = {m: n for n, m in model.named_modules()}
    shapes: dict[str, list] = {}
    calls: list[str] = []

    def pre(module, args):
        calls.append(names[module])

    def post(module, args, output):
        shapes.setdefault(names[module], []).append(_shape(output))

    failure: Exception = RuntimeError("no device to run on")
    for device in ("meta", model_device(model)):
        shapes.clear()
        calls.clear()
        x = torch.zeros(1, *input_shape, device=device)
        try:
            with evaluating(model), hooked(names, pre, post), torch.no_grad():
                run_with_stand_ins(model, x) if device == "meta" else model(x)
            return shapes, calls
        except CnnlabError:
            raise
        except Exception as e:  # an operation `meta` cannot run: try the model's own device once
            failure = e
    raise CnnlabError(
        f"the model does not run on an input of shape {list(input_shape)}: {failure}; "
        "give the input size it was built for (--input CxHxW)"
    )


def _last_name(last_conv: str, shapes: dict[str, list]) -> str:
    """The outermost module holding `last_conv` whose single output has the convolution's shape."""
    parts = last_conv.split(".")
    target = shapes[last_conv][-1]
    for depth in range(1, len(parts)):
        outer = ".".join(parts[:depth])
        if shapes.get(outer) == [target]:
            return outer
    return last_conv


def list_layers(model: nn.Module, input_shape: tuple) -> LayerListing:
    """Every module of `model` (root excluded) for one input of `input_shape` (C, H, W)."""
    shapes, calls = _trace(model, tuple(input_shape))
    modules = dict(model.named_modules())
    order = list(dict.fromkeys(calls)) + [n for n in modules if n not in calls]
    rows = [
        LayerRow(n, type(modules[n]).__name__, isinstance(modules[n], nn.Conv2d), shapes.get(n, [])) for n in order if n
    ]
    convs = [n for n in calls if isinstance(modules[n], nn.Conv2d)]
    first = convs[0] if convs else None
    last_conv = convs[-1] if convs else None
    last = _last_name(last_conv, shapes) if last_conv else None
    spatial = [n for n in convs if len(shapes[n][-1] or []) == 3 and shapes[n][-1][1] * shapes[n][-1][2] > 1]
    last_spatial = _last_name(spatial[-1], shapes) if spatial else None
    return LayerListing(rows, tuple(input_shape), first, last, last_conv, last_spatial)
