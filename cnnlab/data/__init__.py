"""Data: find a dataset, decode it once into uint8 tensors, split it, and serve device-resident batches."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.data.cache import load_cached
from cnnlab.data.loader import DeviceBatches
from cnnlab.data.sources import ImageSet, locate
from cnnlab.data.splits import class_balanced_subset, stratified_split
from cnnlab.errors import CnnlabError


@dataclass
class Splits:
    """Train, validation and test batches, and what a model needs to know about the data."""

    train: DeviceBatches
    val: DeviceBatches
    test: DeviceBatches
    classes: list[str]
    shape: tuple[int, int, int]  # (C, H, W) of one input
    info: dict  # source, sizes and normalisation, recorded in the run


# (C, H, W) and class count of the datasets whose files fix them, so a model can be sized without loading data
KNOWN_SHAPES = {"cifar10": ((3, 32, 32), 10), "fashion_mnist": ((1, 28, 28), 10), "mnist": ((1, 28, 28), 10)}


def input_shape(data_cfg, root: Path) -> tuple[tuple[int, int, int], int]:
    """((C, H, W), number of classes) of the configured dataset: known ones without loading, others from the cache."""
    if data_cfg.dataset in KNOWN_SHAPES and data_cfg.image_size is None:
        return KNOWN_SHAPES[data_cfg.dataset]
    train, _, _ = load_images(data_cfg, root)
    return tuple(train.images.shape[1:]), len(train.classes)


def load_images(data_cfg, root: Path) -> tuple[ImageSet, ImageSet, Path]:
    """(train, test, where they came from) for the configured dataset, via the tensor cache."""
    found = locate(data_cfg.dataset, root, data_cfg.path, data_cfg.image_size)
    variant = f"size{data_cfg.image_size}" if data_cfg.image_size else ""
    train, test = load_cached(data_cfg.dataset, found, variant)
    return train, test, found.path


def split_indices(data_cfg, train: ImageSet, test: ImageSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded (train, validation, test) indices: optional class-balanced subsets, then a stratified hold-out."""
    gen = torch.Generator().manual_seed(data_cfg.split_seed)
    pool = torch.arange(len(train))
    if data_cfg.train_subset is not None:
        if data_cfg.train_subset > len(train):
            raise CnnlabError(f"data.train_subset={data_cfg.train_subset} but the training set has only {len(train)} images")
        pool = class_balanced_subset(train.labels, data_cfg.train_subset, gen)
    tr, va = stratified_split(train.labels[pool], data_cfg.val_fraction, gen)
    test_idx = torch.arange(len(test))
    if data_cfg.test_subset is not None:
        if data_cfg.test_subset > len(test):
            raise CnnlabError(f"data.test_subset={data_cfg.test_subset} but the test set has only {len(test)} images")
        test_idx = class_balanced_subset(test.labels, data_cfg.test_subset, gen)
    if len(va) == 0:
        raise CnnlabError("the validation split is empty; raise data.val_fraction or data.train_subset")
    return pool[tr], pool[va], test_idx


def normalisation(data_cfg, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list, list]:
    """Per-channel (scale, shift) so that x = img*scale + shift is normalised, then y = a*x + b applied."""
    c = images.shape[1]
    if data_cfg.normalize:
        pixels = images.transpose(0, 1).reshape(c, -1).float() / 255
        mean, std = pixels.mean(1), pixels.std(1).clamp_min(1e-3)
    else:
        mean, std = torch.zeros(c), torch.ones(c)
    scale = data_cfg.affine_a / (255 * std)
    shift = data_cfg.affine_a * (-mean / std) + data_cfg.affine_b
    return scale, shift, mean.tolist(), std.tolist()


def prepare(cfg, root: Path, device: torch.device) -> Splits:
    """Everything the engine needs from the data section of a config."""
    train, test, source = load_images(cfg.data, root)
    tr, va, te = split_indices(cfg.data, train, test)
    scale, shift, mean, std = normalisation(cfg.data, train.images[tr])
    aug = cfg.data.augment
    common = dict(device=device, scale=scale, shift=shift, channels_last=cfg.train.channels_last)
    splits = Splits(
        train=DeviceBatches(train.images[tr], train.labels[tr], cfg.train.batch_size, shuffle=True,
                            crop_padding=aug.crop_padding, flip=aug.flip, **common),
        val=DeviceBatches(train.images[va], train.labels[va], cfg.train.eval_batch_size, **common),
        test=DeviceBatches(test.images[te], test.labels[te], cfg.train.eval_batch_size, **common),
        classes=train.classes,
        shape=tuple(train.images.shape[1:]),
        info={"source": str(source), "train": len(tr), "val": len(va), "test": len(te), "mean": mean, "std": std},
    )
    return splits
