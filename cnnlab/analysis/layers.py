"""The per-layer table a run records (architecture.json) and its report shows: rows of `count`, as dicts.

Each row has name, type, output_shape, params, trainable_params, buffers, and the rest of the counts
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
        row["output_shape"] = row["output_shape"] or []
        rows.append(row)
    return rows
