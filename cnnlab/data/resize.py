"""Resize a batch on the device (`data.input_size`): small images up to the size a pretrained network expects.

Applied to normalised float batches after augmentation, so the dataset stays small in memory and the crop and
flip work at the original resolution. Bilinear without antialiasing (only upsampling is intended; it is what
torchvision's resize does to tensors when antialias=False). Per-pixel targets are not resized here: for
segmentation, decode at the wanted size (`data.image_size`) instead.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size); a batch already that size is returned as it is."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
