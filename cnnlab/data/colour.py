"""Colourization as classification: greyscale inputs, a k-means colour palette, per-pixel colour indices."""

from __future__ import annotations

import numpy as np
import torch

LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601 weights, as PIL's convert("L")
PALETTE_SAMPLE = 200_000  # pixels drawn for k-means: plenty for NC <= 64, and fast


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> uint8 (N, 1, H, W) luminance."""
    grey = (images.float() * LUMA.view(1, 3, 1, 1)).sum(1, keepdim=True)
    return grey.round().clamp(0, 255).to(torch.uint8)


def fit_palette(images: torch.Tensor, colours: int, seed: int) -> torch.Tensor:
    """`colours` RGB centres (float, 0..255) by seeded k-means over the pixels of `images` (N, 3, H, W)."""
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3).float()
    gen = torch.Generator().manual_seed(seed)
    if len(pixels) > PALETTE_SAMPLE:
        pixels = pixels[torch.randperm(len(pixels), generator=gen)[:PALETTE_SAMPLE]]
    from scipy.cluster.vq import kmeans2  # scipy takes 0.2 s to import: only for colourization runs

    centres, _ = kmeans2(pixels.numpy().astype(np.float64), colours, minit="++", seed=seed)
    order = np.argsort(centres @ LUMA.numpy().astype(np.float64))  # dark to light: a stable, readable order
    return torch.from_numpy(centres[order]).float()


def quantise(images: torch.Tensor, palette: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Index of the nearest palette colour for every pixel: uint8 (N, H, W)."""
    out = []
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].float().permute(0, 2, 3, 1)  # N, H, W, 3
        dist = ((x.unsqueeze(-2) - palette) ** 2).sum(-1)  # N, H, W, NC
        out.append(dist.argmin(-1).to(torch.uint8))
    return torch.cat(out)


def decode(logits: torch.Tensor, palette: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
    """Per-pixel class scores (N, NC, H, W) -> RGB float images (N, 3, H, W) in 0..1.

    temperature None: the most likely palette colour. Otherwise the annealed mean of Zhang et al.
    (2016): softmax(log p / T) weighted mean of the palette colours; T -> 0 approaches the mode,
    T = 1 is the plain mean (greyish), T around 0.38 keeps colours vivid but spatially consistent.
    """
    palette = palette.to(logits.device)
    if temperature is None:
        rgb = palette[logits.argmax(1)]  # N, H, W, 3
    else:
        weights = torch.softmax(torch.log_softmax(logits.float(), 1) / temperature, dim=1)
        rgb = torch.einsum("nkhw,kc->nhwc", weights, palette)
    return (rgb / 255).clamp(0, 1).permute(0, 3, 1, 2)


def decode_targets(targets: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Per-pixel palette indices (N, H, W) -> the quantised ground truth as RGB (N, 3, H, W) in 0..1."""
    return (palette.to(targets.device)[targets.long()] / 255).permute(0, 3, 1, 2)
