"""Every look-inside figure of a classifier at once, and the record that goes with them.

Independent of run folders: it takes a model, its test batches (cnnlab DeviceBatches, which know the
normalisation x = img*scale + shift) and a folder for the PNG files, and returns a JSON-able record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.activations import activations
from cnnlab.explain.confusion import confusion, most_confused, split_outputs
from cnnlab.explain.example import Example, denormalise, split_example
from cnnlab.explain.filters import filter_tiles
from cnnlab.explain.gradcam import grad_cam
from cnnlab.explain.layer_listing import LayerListing, find_layer, list_layers
from cnnlab.explain.sparsity import sparsity
from cnnlab.viz.activations import plot_activations
from cnnlab.viz.cam import plot_cam
from cnnlab.viz.confusion import plot_confusion, plot_most_confused
from cnnlab.viz.filters import plot_filter_grid


def _check_maps(listing: LayerListing, name: str) -> None:
    """Activations and Grad-CAM are drawn for layers that output channel maps (C, H, W) on every call."""
    shapes = next(row.output_shapes for row in listing.rows if row.name == name)
    if not shapes:
        raise CnnlabError(f"layer '{name}' does not run in the forward pass; pick one that does (see `cnnlab layers`)")
    flat = [s for s in shapes if s is None or len(s) != 3]
    if flat:
        what = "no single tensor" if flat[0] is None else f"{' x '.join(map(str, flat[0]))} values, not channel maps"
        raise CnnlabError(
            f"layer '{name}' gives {what}; activations and class activation maps are drawn for layers "
            "with C x H x W output, such as convolutions (see `cnnlab layers`)"
        )


def _image_figures(
    model: nn.Module,
    example: Example,
    classes: list[str],
    listing: LayerListing,
    names: list[str],
    cam_layer: str,
    channels: int,
    out: Path,
) -> tuple[list, dict]:
    """Activations of `names` and Grad-CAM (the predicted class, and the true one when known) for one example."""
    figures = []
    for name, calls in activations(model, example.x, names).items():
        for i, act in enumerate(calls):
            parts = [
                f"call {i + 1} of {len(calls)}" if len(calls) > 1 else "",
                listing.one_pixel_note(name) if act.shape[-2:] == (1, 1) else "",
            ]
            note = "; ".join(p for p in parts if p)
            suffix = f"-call{i + 1}" if len(calls) > 1 else ""
            figures.append(
                plot_activations(example.picture, act[0], out / f"activations-{name}{suffix}.png", name, channels, note)
            )
    cam = grad_cam(model, example.x, cam_layer)  # the predicted class
    probs = cam.probs[0]
    predicted, label = int(probs.argmax()), example.label
    panels = [(f"predicted: {classes[predicted]} (p={probs[predicted]:.2f})", cam.maps[0])]
    if label is not None:
        truth = cam if predicted == label else grad_cam(model, example.x, cam_layer, torch.tensor([label]))
        panels.append((f"true: {classes[label]} (p={probs[label]:.2f})", truth.maps[0]))
    h, w = cam.grid
    caption = (
        f"Grad-CAM at {cam_layer} (call {cam.call}, a {h}x{w} map): the layer's channels weighted by the mean "
        "gradient of the class's score (logit), ReLU, upsampled to the input; each map scaled to its own maximum"
    )
    if h * w == 1:
        note = listing.one_pixel_note(cam_layer)
        caption += f". {note[:1].upper()}{note[1:]}" + (": pick it with --cam-layer" if listing.last_spatial else "")
    figures.append(
        plot_cam(example.picture, panels, out / "gradcam.png", f"class activation maps at {cam_layer}", caption)
    )
    image = {
        "source": example.source,
        "index": example.index,
        "predicted": classes[predicted],
        "probability": float(probs[predicted]),
        "true": None if label is None else classes[label],
        "true_probability": None if label is None else float(probs[label]),
    }
    return figures, image


def _filter_figures(model: nn.Module, first: Optional[str], out: Path) -> list[dict]:
    """The first convolution's filters as an image grid (none for a network without a convolution)."""
    if first is None:
        return []
    tiles = filter_tiles(find_layer(model, first), first)
    grid = plot_filter_grid(tiles.tiles, tiles.ranges, tiles.per_row, out / "filters.png", first, tiles.rgb)
    return [{**grid, "of": "weights"}]


def _test_split_figures(test, classes: list[str], matrix, worst: list[dict], out: Path) -> list[dict]:
    """The confusion matrix of the test split and its most confident wrong predictions."""
    title = f"confusion matrix, test split ({matrix.total} examples)"
    figures = [
        {
            **plot_confusion(matrix.counts, matrix.row_normalised(), classes, out / "confusion.png", title),
            "of": "test split",
        }
    ]
    if worst:
        wrong = torch.tensor([ex["index"] for ex in worst], device=test.images.device)
        pictures = list(denormalise(test.take(wrong), test.scale, test.shift))
        title = f"the {len(worst)} most confident wrong predictions"
        figures.append({**plot_most_confused(pictures, worst, out / "most-confused.png", title), "of": "test split"})
    return figures


def explain_run(
    model: nn.Module,
    test,
    classes: list[str],
    out_dir: Path,
    layers: Optional[list[str]] = None,
    example: Union[Example, int] = 0,
    cam_layer: str = "last",
    confused: int = 16,
    channels: int = 16,
    sparsity_threshold: float = 1e-3,
    bf16: bool = False,
) -> dict:
    """Write the filter grid, activations, Grad-CAM, confusion matrix and most-confused figures into `out_dir`.

    `layers` (default: the first and last convolution) and `cam_layer` take module names, `first` or
    `last`; `example` is the input shown: a test example's index or any Example. Returns the record:
    figures, layer names, the example's prediction, the confusion matrix with per-class accuracy, the
    most-confused examples and the sparsity of the weights.
    """
    if test.labels.dim() != 1:
        raise CnnlabError("explain's figures are for classification; this split has per-pixel targets")
    if isinstance(example, int):
        example = split_example(test, example)
    out = Path(out_dir)
    listing = list_layers(model, test.model_shape)
    maps = layers is not None or listing.first is not None  # a network of dense layers alone has no maps to show
    names = list(dict.fromkeys(listing.resolve(n) for n in (layers or ["first", "last"]))) if maps else []
    cam_name = listing.resolve(cam_layer) if maps else None
    for name in names + ([cam_name] if maps else []):
        _check_maps(listing, name)
    figures = _filter_figures(model, listing.first, out)  # each tagged: of the weights, the example, the test split
    shown, image = (
        ([], None) if not maps else _image_figures(model, example, classes, listing, names, cam_name, channels, out)
    )
    figures += [{**fig, "of": "example"} for fig in shown]
    outputs, labels = split_outputs(model, test, bf16)
    matrix = confusion(outputs, labels, classes)
    worst = most_confused(outputs, labels, classes, confused)
    figures += _test_split_figures(test, classes, matrix, worst, out)
    return {
        "layers": {
            "first": listing.first,
            "last": listing.last,
            "last_conv": listing.last_conv,
            "last_spatial": listing.last_spatial,
            "shown": names,
            "cam": cam_name,
        },
        "image": image,
        "figures": figures,
        "confusion": matrix.as_dict(),
        "most_confused": worst,
        "sparsity": sparsity(model, sparsity_threshold),
    }
