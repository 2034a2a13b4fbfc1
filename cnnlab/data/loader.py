"""Batches served from tensors that live on the device: no DataLoader, no per-image work."""

from __future__ import annotations

from typing import Any, Iterator, Optional, Union

import torch

from cnnlab.data.augment import flip_where, random_crop, random_flip, random_zoom
from cnnlab.data.resize import resize_batch


class DeviceBatches:
    """One split held whole as uint8 on the device; yields normalised float batches and their targets.

    Targets are class indices (N,) or per-pixel classes (N, H, W), uint8 or int64.

    Normalisation and the affine input transform y = a*x + b are folded into one per-channel
    scale and shift: x = img * scale + shift. With `input_size`, normalised batches are then resized to
    input_size x input_size (after augmentation, so the images stay small in memory).

    flip: True mirrors a random half of each batch; "alternating" mirrors a seeded random half of the images
    (drawn once from `seed`) in odd epochs and the other half in even ones, so every image is seen both ways
    in two epochs. translate: a random shift by up to N pixels with the border reflected. zoom: each image
    enlarged by a random factor in [1, zoom] and cut back to its size (scale augmentation). drop_last: no
    partial last batch (when shuffling).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        device: torch.device,
        scale: torch.Tensor,
        shift: torch.Tensor,
        crop_padding: int = 0,
        flip: Union[bool, str] = False,
        shuffle: bool = False,
        channels_last: bool = True,
        input_size: Optional[int] = None,
        translate: int = 0,
        zoom: float = 1.0,
        drop_last: bool = False,
        seed: int = 0,
    ):
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.scale = scale.to(device).view(1, -1, 1, 1)
        self.shift = shift.to(device).view(1, -1, 1, 1)
        self.crop_padding, self.flip, self.shuffle = crop_padding, flip, shuffle
        self.translate, self.zoom, self.drop_last = translate, zoom, drop_last and shuffle
        self.channels_last = channels_last
        self.input_size = input_size
        self.flipped_first = None  # alternating: which images are mirrored in odd epochs
        if flip == "alternating":
            gen = torch.Generator().manual_seed(seed)
            self.flipped_first = (torch.rand(len(labels), generator=gen) < 0.5).to(device)

    def __len__(self) -> int:
        return self.num_batches()

    def num_batches(self, world: int = 1) -> int:
        """Batches per pass over the split when it is spread over `world` processes (global batches in training);
        with drop_last, no partial last batch."""
        n = self.used(world) if self.shuffle else len(self.labels)
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size

    def used(self, world: int = 1) -> int:
        """Training examples taken per epoch by `world` processes: the last n % world of each epoch's permutation
        sit out (a different few each epoch), so that every process takes as many."""
        return len(self.labels) - len(self.labels) % world

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

    def take(self, index: torch.Tensor) -> torch.Tensor:
        """Examples `index`, normalised and unaugmented, at the size the model sees (explain's inputs)."""
        return self._normalise(self.images[index])

    @property
    def model_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the inputs the model sees: the stored images', or data.input_size square."""
        c, h, w = self.images.shape[1:]
        return (c, h, w) if self.input_size is None else (c, self.input_size, self.input_size)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n images drawn at random (all when there are fewer), normalised and unaugmented: statistics of a split
        whose images are stored in class order."""
        idx = torch.randperm(len(self.labels), generator=generator)[:n].to(self.device)
        return self._normalise(self.images[idx])

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        memory = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.to(memory_format=memory).float() * self.scale + self.shift
        return x if self.input_size is None else resize_batch(x, self.input_size)

    def batches(
        self,
        generator: Optional[torch.Generator] = None,
        rank: int = 0,
        world: int = 1,
        epoch: int = 1,
        pad_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image once (but a dropped partial batch), in a seeded random order when shuffling, augmented when
        configured (`epoch`, 1-based, for alternating flips).

        Spread over `world` processes, the part of process `rank`. A shuffled (training) split: each global batch
        order[s:s+B] of the epoch's permutation is cut by rows rank::world, and its augmentation is drawn for the
        whole global batch, of which each process takes its rows; so the processes together train on exactly the
        batches one process would, B/world images each. A split in order (evaluation): a contiguous 1/world of
        it, nothing repeated (shares differ by at most one image; only sums over them are kept). pad_last: a short
        last batch is filled up with blank images to the batch size, so every batch has one shape; its targets are
        not padded (score only the first len(targets) outputs)."""
        for idx, drawn, rows in self._plan(generator, rank, world):
            x, y = self.augment(self.images[idx], self.labels[idx], idx, generator, epoch, drawn, rows)
            if pad_last and len(y) < self.batch_size:
                x = torch.cat([x, x.new_zeros((self.batch_size - len(y), *x.shape[1:]))])
            yield self._normalise(x), y

    def augment(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx,
        generator: Optional[torch.Generator],
        epoch: int,
        drawn: Optional[int] = None,
        rows: slice = slice(None),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The configured augmentations of one batch (images `idx` of the split) in epoch `epoch` (1-based); the
        draws are for a global batch of `drawn`, of which these are `rows` (see random_crop)."""
        masks = y if y.dim() == 3 else None  # per-pixel targets move with their images
        if self.zoom > 1.0:
            x, masks = random_zoom(x, self.zoom, generator, masks, drawn, rows)
        if self.crop_padding:
            x, masks = random_crop(x, self.crop_padding, generator, masks, drawn, rows)
        if self.translate:
            x, masks = random_crop(x, self.translate, generator, masks, drawn, rows, reflect=True)
        if self.flipped_first is not None:
            x, masks = flip_where(x, self.flipped_first[idx] ^ (epoch % 2 == 0), masks)
        elif self.flip:
            x, masks = random_flip(x, generator, masks, drawn, rows)
        return x, (y if masks is None else masks)

    def _plan(self, generator, rank: int, world: int) -> Iterator[tuple[Any, int, slice]]:
        """Per batch: which examples this process takes, how many the (global) batch holds,
        which of its rows they are."""
        n, size = len(self.labels), self.batch_size
        if not self.shuffle:
            low, high = n * rank // world, n * (rank + 1) // world
            for start in range(low, high, size):
                stop = min(start + size, high)
                yield slice(start, stop), stop - start, slice(None)
            return
        order = torch.randperm(n, generator=generator).to(self.device)[: self.used(world)]
        for start in range(0, self.num_batches(world) * size, size):
            batch = order[start : start + size]
            yield batch[rank::world], len(batch), slice(rank, None, world)
