"""One pass through a spec, layer by layer: the state the builder and the formulas both carry along.

Besides the current shape a later layer may need to know what came before: the tensors kept by
`save NAME` (their shapes, and where they were saved, to explain a skip that no longer fits) and
the shape before `flatten` (to explain a dense layer's feature count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from cnnlab.models.layer_kinds import LayerKind, kind_of
from cnnlab.models.spec import Layer, check_size, evaluate


@dataclass(frozen=True)
class Saved:
    """A tensor kept by `save NAME`: its shape and the spec position of the `save`."""

    shape: tuple
    index: int


@dataclass(frozen=True)
class ShapeStep:
    """What one layer did to the shape, with the arithmetic that explains it."""

    layer: Layer
    in_shape: tuple
    out_shape: tuple
    arithmetic: str


@dataclass(frozen=True)
class At:
    """One layer met on the walk: its record, its options evaluated, its input shape and the walk so far."""

    layer: Layer
    kind: LayerKind
    opt: dict[str, Any]
    shape: tuple
    walk: "ShapeWalk"

    @property
    def where(self) -> str:
        return self.layer.where()


@dataclass
class ShapeWalk:
    """Where a pass through the spec stands. Shapes hold integers (builder) or sympy expressions (formulas)."""

    shape: tuple
    saved: dict[str, Saved] = field(default_factory=dict)
    pre_flatten: Optional[tuple] = None
    steps: list[ShapeStep] = field(default_factory=list)

    def enter(self, layer: Layer, values: dict, number: Callable = lambda v: v) -> At:
        """The next layer with its options evaluated (`number` converts each value) and its input checked."""
        kind = kind_of(layer.kind, layer.where())
        opt = {
            key: value
            if key in kind.words or value is None
            else number(check_size(layer.kind, key, evaluate(value, values, layer.where()), layer.where()))
            for key, value in layer.options.items()
        }
        at = At(layer, kind, opt, self.shape, self)
        kind.fits(at)
        return at

    def leave(self, at: At, out: tuple, arithmetic: str = "") -> None:
        at.kind.remember(at)
        self.steps.append(ShapeStep(at.layer, at.shape, out, arithmetic))
        self.shape = out

    def save(self, name: str, shape: tuple, index: int) -> None:
        self.saved[name] = Saved(shape, index)
