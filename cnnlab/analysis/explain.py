"""Shape arithmetic, layer by layer: output size = floor((W - F + 2P)/S) + 1 with the layer's own numbers.

The arithmetic is read off each executed module (kernel, stride, padding, ...) by `count`, so it is the
same for a spec network and for a torchvision model. A spec whose shapes do not fit never gets this far:
the builder refuses it with the layer named and the same arithmetic shown.
"""

from __future__ import annotations

from typing import Optional

from cnnlab.analysis.count import LayerCount


def explained_rows(rows: list[LayerCount]) -> list[list]:
    """[layer, input, output, arithmetic] for every executed layer."""
    return [
        [
            r.name + (f" (call {r.call})" if r.call > 1 else ""),
            r.input_shape,
            r.output_shape,
            r.arithmetic or "(same shape)",
        ]
        for r in rows
        if r.output_shape is not None
    ]


def size_path(rows: list[LayerCount], upto: int, in_shape: tuple, axis: int = 1) -> str:
    """How the height (axis 1) or width (axis 2) changed before row `upto`: '28 -> 24 (conv1) -> 20 (conv2) -> ...'."""
    size = in_shape[axis]
    steps = [str(size)]
    for r in rows[:upto]:
        if r.output_shape is not None and len(r.output_shape) == 3 and r.output_shape[axis] != size:
            size = r.output_shape[axis]
            steps.append(f"{size} ({r.name})")
    return " -> ".join(steps)


def features_note(rows: list[LayerCount], in_shape: tuple) -> Optional[str]:
    """Why the first dense layer after a flatten gets the number of features it gets."""
    for i in range(1, len(rows)):
        prev, row = rows[i - 1], rows[i]
        if prev.type == "Flatten" and row.type == "Linear" and prev.input_shape and len(prev.input_shape) == 3:
            c, h, w = prev.input_shape
            height, width = size_path(rows, i, in_shape, 1), size_path(rows, i, in_shape, 2)
            width = "the width likewise" if width == height else f"the width went {width}"
            return (
                f"{row.name} receives {c * h * w} features: {prev.name} lays out {c} channels of {h} x {w} "
                f"as {c}*{h}*{w} = {c * h * w}; the height went {height}, {width}."
            )
    return None
