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


def random_zoom(
    images: torch.Tensor,
    zoom: float,
    generator: torch.Generator,
    masks: Optional[torch.Tensor] = None,
    drawn: Optional[int] = None,
    rows: slice = slice(None),
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Enlarge each image by a random factor in [1, zoom] about a random point and keep a window of the original
    size (scale augmentation without a border to fill): bilinear for uint8 images, nearest for masks, one
    batched resampling; `drawn` and `rows` as for random_crop."""
    if zoom <= 1.0:
        return images, masks
    drawn = images.shape[0] if drawn is None else drawn
    factor = 1.0 + (zoom - 1.0) * torch.rand(drawn, generator=generator)[rows]
    # the window's centre, in [-1, 1] coordinates, anywhere that keeps the whole window inside the image
    reach = 1.0 - 1.0 / factor
    centre = (2.0 * torch.rand(drawn, 2, generator=generator)[rows] - 1.0) * reach[:, None]
    theta = torch.zeros(len(factor), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / factor
    theta[:, :, 2] = centre
    grid = F.affine_grid(theta, list(images.shape), align_corners=False).to(images.device)
    zoomed = F.grid_sample(images.float(), grid, mode="bilinear", align_corners=False)
    images = zoomed.round_().clamp_(0, 255).to(images.dtype).contiguous(memory_format=torch.channels_last)
    if masks is not None:
        picked = F.grid_sample(masks.unsqueeze(1).float(), grid, mode="nearest", align_corners=False)
        masks = picked.squeeze(1).to(masks.dtype)
    return images, masks
