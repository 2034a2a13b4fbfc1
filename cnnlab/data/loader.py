"""Batches served from tensors that live on the device: no DataLoader, no per-image work."""
from __future__ import annotations

from typing import Iterator, Optional

import torch

from cnnlab.data.augment import random_crop, random_flip
from cnnlab.data.resize import resize_batch


class DeviceBatches:
    """One split held whole as uint8 on the device; yields normalised float batches and their targets.

    Targets are class indices (N,) or per-pixel classes (N, H, W), uint8 or int64.

    Normalisation and the affine input transform y = a*x + b are folded into one per-channel
    scale and shift: x = img * scale + shift. With `input_size`, normalised batches are then resized to
    input_size x input_size (after augmentation, so the images stay small in memory).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device,
                 scale: torch.Tensor, shift: torch.Tensor, crop_padding: int = 0, flip: bool = False,
                 shuffle: bool = False, channels_last: bool = True, input_size: Optional[int] = None):
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.scale = scale.to(device).view(1, -1, 1, 1)
        self.shift = shift.to(device).view(1, -1, 1, 1)
        self.crop_padding, self.flip, self.shuffle = crop_padding, flip, shuffle
        self.channels_last = channels_last
        self.input_size = input_size

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    @property
    def num_images(self) -> int:
        return len(self.labels)

    def first(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n examples, normalised and unaugmented: the fixed images that figures show."""
        return self._normalise(self.images[:n]), self.labels[:n]

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        memory = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.to(memory_format=memory).float() * self.scale + self.shift
        return x if self.input_size is None else resize_batch(x, self.input_size)

    def batches(self, generator: Optional[torch.Generator] = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image once, in a seeded random order when shuffling, augmented when configured."""
        n = len(self.labels)
        order = torch.randperm(n, generator=generator).to(self.device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                x, y = self.images[start:start + self.batch_size], self.labels[start:start + self.batch_size]
            else:
                idx = order[start:start + self.batch_size]
                x, y = self.images[idx], self.labels[idx]
            masks = y if y.dim() == 3 else None  # per-pixel targets move with their images
            if self.crop_padding:
                x, masks = random_crop(x, self.crop_padding, generator, masks)
            if self.flip:
                x, masks = random_flip(x, generator, masks)
            y = y if masks is None else masks
            yield self._normalise(x), y
