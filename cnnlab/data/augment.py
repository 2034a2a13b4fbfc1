"""Batched, seeded augmentation on uint8 tensors, done on the device a whole batch at a time.

Per-pixel targets (masks, colour indices) move with their images; the border a crop brings in is
marked IGNORE so the loss skips it.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.nn import functional as F

IGNORE = 255  # target value for pixels that carry no label (padding); uint8 targets allow up to 255 classes


def _windows(t: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Cut an h x w window at (dy, dx) from each padded (B, C, H', W') tensor; one gather for the batch."""
    rows = dy[:, None] + torch.arange(h, device=t.device)[None, :]
    cols = dx[:, None] + torch.arange(w, device=t.device)[None, :]
    batch = torch.arange(t.shape[0], device=t.device)[:, None, None]
    # advanced indices on dims 0, 2, 3 with a slice on dim 1 give (B, H, W, C): channels_last order
    return t[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_crop(
    images: torch.Tensor,
    padding: int,
    generator: torch.Generator,
    masks: Optional[torch.Tensor] = None,
    drawn: Optional[int] = None,
    rows: slice = slice(None),
    reflect: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Pad each image by `padding` (zeros, or the image reflected at its border) and cut a random window of the
    original size: a random shift by up to `padding` pixels each way (masks alike; their zero border is IGNORE).

    The offsets are drawn for a batch of `drawn` images (default: all of `images`) and those of `rows` are
    used: a process of a spread run holds only its rows of the global batch, yet draws what one process would."""
    if padding == 0:
        return images, masks
    b, _, h, w = images.shape
    drawn = b if drawn is None else drawn
    dy = torch.randint(0, 2 * padding + 1, (drawn,), generator=generator)[rows].to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (drawn,), generator=generator)[rows].to(images.device)
    pad = (padding, padding, padding, padding)
    mode = "reflect" if reflect else "constant"
    images = _windows(F.pad(images, pad, mode=mode), dy, dx, h, w)
    if masks is not None:
        fill = {} if reflect else {"value": IGNORE}
        masks = _windows(F.pad(masks.unsqueeze(1), pad, mode=mode, **fill), dy, dx, h, w).squeeze(1)
    return images, masks


def flip_where(
    images: torch.Tensor, flip: torch.Tensor, masks: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Mirror left-right the images whose entry of the boolean `flip` (B,) is true (masks alike)."""
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    if masks is not None:
        masks = torch.where(flip[:, None, None], masks.flip(2), masks)
    return images, masks


def random_flip(
    images: torch.Tensor,
    generator: torch.Generator,
    masks: Optional[torch.Tensor] = None,
    drawn: Optional[int] = None,
    rows: slice = slice(None),
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Mirror a random half of the batch left-right (masks alike); `drawn` and `rows` as for random_crop."""
    drawn = images.shape[0] if drawn is None else drawn
    return flip_where(images, (torch.rand(drawn, generator=generator) < 0.5)[rows].to(images.device), masks)
