"""Batches served from tensors that live on the device: no DataLoader, no per-image work."""
from __future__ import annotations

from typing import Iterator, Optional, Union

import torch

from cnnlab.data.augment import flip_where, random_crop, random_flip


class DeviceBatches:
    """One split held whole as uint8 on the device; yields normalised float batches and their targets.

    Targets are class indices (N,) or per-pixel classes (N, H, W), uint8 or int64.

    Normalisation and the affine input transform y = a*x + b are folded into one per-channel
    scale and shift: x = img * scale + shift.

    flip: True mirrors a random half of each batch; "alternating" mirrors a seeded random half of the images
    (drawn once from `seed`) in odd epochs and the other half in even ones, so every image is seen both ways
    in two epochs. translate: a random shift by up to N pixels with the border reflected. drop_last: no
    partial last batch (when shuffling).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device,
                 scale: torch.Tensor, shift: torch.Tensor, crop_padding: int = 0, flip: Union[bool, str] = False,
                 shuffle: bool = False, channels_last: bool = True, translate: int = 0, drop_last: bool = False,
                 seed: int = 0):
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.scale = scale.to(device).view(1, -1, 1, 1)
        self.shift = shift.to(device).view(1, -1, 1, 1)
        self.crop_padding, self.flip, self.shuffle = crop_padding, flip, shuffle
        self.translate, self.drop_last = translate, drop_last and shuffle
        self.channels_last = channels_last
        self.flipped_first = None  # alternating: which images are mirrored in odd epochs
        if flip == "alternating":
            gen = torch.Generator().manual_seed(seed)
            self.flipped_first = (torch.rand(len(labels), generator=gen) < 0.5).to(device)

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.labels) // self.batch_size
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    @property
    def num_images(self) -> int:
        return len(self.labels)

    @property
    def images_per_epoch(self) -> int:
        """The images one pass serves: all of them, less a dropped partial batch."""
        return len(self) * self.batch_size if self.drop_last else len(self.labels)

    def first(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n examples, normalised and unaugmented: the fixed images that figures show."""
        return self._normalise(self.images[:n]), self.labels[:n]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n images drawn at random (all when there are fewer), normalised and unaugmented: statistics of a split
        whose images are stored in class order."""
        idx = torch.randperm(len(self.labels), generator=generator)[:n].to(self.device)
        return self._normalise(self.images[idx])

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        memory = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.to(memory_format=memory).float() * self.scale + self.shift

    def batches(self, generator: Optional[torch.Generator] = None, epoch: int = 1,
                pad_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image once (but a dropped partial batch), in a seeded random order when shuffling, augmented when
        configured. pad_last: a short last batch is filled up with blank images to the batch size, so every
        batch has one shape; its targets are not padded (score only the first len(targets) outputs)."""
        order = torch.randperm(len(self.labels), generator=generator).to(self.device) if self.shuffle else None
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = slice(start, start + self.batch_size) if order is None else order[start:start + self.batch_size]
            x, y = self.augment(self.images[idx], self.labels[idx], idx, generator, epoch)
            if pad_last and len(y) < self.batch_size:
                x = torch.cat([x, x.new_zeros((self.batch_size - len(y), *x.shape[1:]))])
            yield self._normalise(x), y

    def augment(self, x: torch.Tensor, y: torch.Tensor, idx, generator: Optional[torch.Generator],
                epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The configured augmentations of one batch (images `idx` of the split) in epoch `epoch` (1-based)."""
        masks = y if y.dim() == 3 else None  # per-pixel targets move with their images
        if self.crop_padding:
            x, masks = random_crop(x, self.crop_padding, generator, masks)
        if self.translate:
            x, masks = random_crop(x, self.translate, generator, masks, reflect=True)
        if self.flipped_first is not None:
            x, masks = flip_where(x, self.flipped_first[idx] ^ (epoch % 2 == 0), masks)
        elif self.flip:
            x, masks = random_flip(x, generator, masks)
        return x, (y if masks is None else masks)
