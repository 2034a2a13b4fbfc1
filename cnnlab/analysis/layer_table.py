"""The per-layer table a run records (architecture.json) and its report shows: rows of `count`, as dicts.

Each row has name, type, output_shape, params, trainable_params, frozen_params, buffers, and the rest of the counts
(weights, biases, macs, bias_adds, activation_bytes; see cnnlab.analysis.count for the conventions).
"""

from __future__ import annotations

from torch import nn

from cnnlab.analysis.count import count


def layer_table(model: nn.Module, input_shape: tuple[int, ...]) -> list[dict]:
    """One row per executed layer call, in execution order, for one input of `input_shape` (C, H, W).

    Counting runs on `meta` stand-ins and never touches the model's own tensors.
    """
    rows = []
    for r in count(model, tuple(input_shape)):
        row = r.as_dict()
        row.pop("arithmetic")
        row["frozen_params"] = r.frozen_params  # model.trainable: parameters that get no gradient
        row["output_shape"] = row["output_shape"] or []
        rows.append(row)
    return rows


def training_macs(rows: list[dict]) -> int:
    """Multiply-accumulates of one training step per image, from the rows of `layer_table` in execution order:
    the forward pass; then, from the first layer with trainable parameters on, the gradient of each layer's
    input (as many as its forward) and of each trainable layer's weights (as many again). With every layer
    trainable that is 3x the forward pass (the usual 6 FLOPs per MAC); a frozen front costs its forward only."""
    forward = sum(row["macs"] for row in rows)
    first = next((i for i, row in enumerate(rows) if row["trainable_params"]), len(rows))
    return (
        forward + sum(row["macs"] for row in rows[first:]) + sum(row["macs"] for row in rows if row["trainable_params"])
    )
