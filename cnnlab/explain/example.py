"""The one input an explanation is about: an example of a split, or a user's image file prepared the way the
run prepared its data (decoded, resized to the model's input size, normalised with the run's statistics)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from cnnlab.data.decoders import decode_image
from cnnlab.errors import CnnlabError


@dataclass
class Example:
    """`x` (1, C, H, W) as the model sees it; `picture` (C, H, W) in 0..1 as a person sees it; `label` its class
    index when known (a user's image has none); `source` says where it came from, in words."""

    x: torch.Tensor
    picture: torch.Tensor
    label: Optional[int]
    source: str
    index: Optional[int] = None  # its index in the split, for an example of a split


def denormalise(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Model inputs back to pictures in 0..1: img = (x - shift) / scale, then / 255."""
    if bool((scale == 0).any()):
        raise CnnlabError("the input transform multiplies by 0 (data.affine_a = 0), so the images cannot be recovered")
    return ((x - shift) / scale / 255).clamp(0, 1)


def split_example(batches, index: int, split: str = "test") -> Example:
    """Example `index` of a split, unaugmented; its label is the split's."""
    if batches.labels.dim() != 1:
        raise CnnlabError("explain's figures are for classification; this split has per-pixel targets")
    if not 0 <= index < batches.num_images:
        raise CnnlabError(f"image index {index} is outside the {split} split (0..{batches.num_images - 1})")
    x = batches.take(torch.tensor([index], device=batches.images.device))
    return Example(
        x,
        denormalise(x, batches.scale, batches.shift)[0],
        int(batches.labels[index]),
        f"{split} example {index}",
        index,
    )


def file_example(path: Path, batches) -> Example:
    """An image file decoded (Pillow), converted to the split's channels (grey or RGB), resized (bilinear) to its
    height and width, and normalised with its scale and shift (those of the run's training data)."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"--image {path}: no such file; give a PNG or JPEG file")
    channels, height, width = batches.model_shape
    if channels not in (1, 3):
        raise CnnlabError(f"the model takes {channels}-channel inputs; only grey (1) or RGB (3) images can be given")
    image = decode_image(path, (height, width), "L" if channels == 1 else "RGB").to(batches.images.device)
    x = image.unsqueeze(0).float() * batches.scale + batches.shift
    return Example(x, image.float() / 255, None, f"file {path.name}, resized to {height}x{width}")
