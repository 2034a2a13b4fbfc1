"""Data: find a dataset, decode it once into uint8 tensors, split it, and serve device-resident batches.

Three tasks read the same sources: classification (images, class labels), colourization
(greyscale images, per-pixel palette indices) and segmentation (photos, per-pixel classes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from cnnlab.data.cache import load_cached
from cnnlab.data.colour import fit_palette, quantise, to_grey
from cnnlab.data.loader import DeviceBatches
from cnnlab.data.decoders import ImageSet
from cnnlab.data.registry import lookup
from cnnlab.data.sources import locate
from cnnlab.data.splits import class_balanced_subset, random_split, random_subset, stratified_split
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
    originals: dict = field(default_factory=dict)  # colourize: the RGB images of val and test, for figures
    palette: Optional[torch.Tensor] = None  # colourize: (NC, 3) RGB centres, 0..255


def input_shape(data_cfg, root: Path) -> tuple[tuple[int, int, int], int]:
    """((C, H, W), number of classes): from the registry where the files fix them, else from the loaded images."""
    record = lookup(data_cfg.dataset)
    if record.shape is not None:
        return record.shape, len(record.classes)
    train, _, _ = load_images(data_cfg, root)
    return tuple(train.images.shape[1:]), len(train.classes)


def load_images(data_cfg, root: Path) -> tuple[ImageSet, ImageSet, Path]:
    """(train, test, where they came from) for the configured dataset, via the tensor cache."""
    found = locate(data_cfg.dataset, root, data_cfg.path, data_cfg.image_size)
    size = lookup(data_cfg.dataset).decode_size(data_cfg.image_size)
    train, test = load_cached(data_cfg.dataset, found, f"size{size}" if size else "")
    return train, test, found.path


def subset(images: ImageSet, idx: torch.Tensor) -> ImageSet:
    return ImageSet(images.images[idx], images.labels[idx], images.classes)


def hold_out_test(data_cfg, train: ImageSet, test: ImageSet) -> tuple[ImageSet, ImageSet]:
    """Datasets without a test split (Penn-Fudan) lose a seeded data.test_fraction of their images to one."""
    if len(test) > 0:
        return train, test
    gen = torch.Generator().manual_seed(data_cfg.split_seed + 7919)  # a stream apart from the validation split
    rest, held = random_split(len(train), data_cfg.test_fraction, gen)
    return subset(train, rest), subset(train, held)


def take_subset(images: ImageSet, n, key: str, gen: torch.Generator) -> torch.Tensor:
    """Indices of `n` seeded examples (class-balanced for class labels), or all when `n` is None."""
    if n is None:
        return torch.arange(len(images))
    if n > len(images):
        raise CnnlabError(f"data.{key}={n} but that split has only {len(images)} images")
    if images.labels.dim() == 3:  # per-pixel targets: every image holds several classes
        return random_subset(len(images), n, gen)
    return class_balanced_subset(images.labels, n, gen)


def split_indices(data_cfg, train: ImageSet, test: ImageSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded (train, validation, test) indices: optional subsets, then a (class-stratified) validation hold-out."""
    gen = torch.Generator().manual_seed(data_cfg.split_seed)
    pool = take_subset(train, data_cfg.train_subset, "train_subset", gen)
    if train.labels.dim() == 3:
        tr, va = random_split(len(pool), data_cfg.val_fraction, gen)
    else:
        tr, va = stratified_split(train.labels[pool], data_cfg.val_fraction, gen)
    test_idx = take_subset(test, data_cfg.test_subset, "test_subset", gen)
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


def only_class(images: ImageSet, name: str) -> ImageSet:
    if name == "all":
        return images
    if name not in images.classes:
        raise CnnlabError(f"data.colour_class '{name}' is not a class of this dataset; choose one of: "
                          f"{', '.join(images.classes)}, or all")
    return subset(images, torch.nonzero(images.labels == images.classes.index(name)).flatten())


def colourize(train: ImageSet, test: ImageSet, tr, va, te, data_cfg) -> tuple[dict, torch.Tensor, dict]:
    """Greyscale inputs and nearest-palette-colour targets; the palette is fitted on training pixels only."""
    if train.images.shape[1] != 3:
        raise CnnlabError(f"task colourize needs colour images; {data_cfg.dataset} has {train.images.shape[1]} channel(s)")
    palette = fit_palette(train.images[tr], data_cfg.palette_size, seed=data_cfg.split_seed)
    parts = {}
    for split, source, idx in (("train", train, tr), ("val", train, va), ("test", test, te)):
        rgb = source.images[idx]
        parts[split] = (to_grey(rgb), quantise(rgb, palette))
    originals = {"val": train.images[va], "test": test.images[te]}
    return parts, palette, originals


def prepare(cfg, root: Path, device: torch.device) -> Splits:
    """Everything the engine needs from the data section of a config."""
    data_cfg = cfg.data
    train, test, source = load_images(data_cfg, root)
    if cfg.task == "colourize":
        train, test = only_class(train, data_cfg.colour_class), only_class(test, data_cfg.colour_class)
    train, test = hold_out_test(data_cfg, train, test)
    tr, va, te = split_indices(data_cfg, train, test)
    palette, originals = None, {}
    if cfg.task == "colourize":
        parts, palette, originals = colourize(train, test, tr, va, te, data_cfg)
        classes = [f"colour {i}" for i in range(len(palette))]
    else:
        parts = {"train": (train.images[tr], train.labels[tr]), "val": (train.images[va], train.labels[va]),
                 "test": (test.images[te], test.labels[te])}
        classes = train.classes
    scale, shift, mean, std = normalisation(data_cfg, parts["train"][0])
    aug = data_cfg.augment
    common = dict(device=device, scale=scale, shift=shift, channels_last=cfg.train.channels_last)
    batches = {
        "train": DeviceBatches(*parts["train"], cfg.train.batch_size, shuffle=True, crop_padding=aug.crop_padding,
                               flip=aug.flip, translate=aug.translate, drop_last=cfg.train.drop_last, seed=cfg.seed,
                               **common),
        "val": DeviceBatches(*parts["val"], cfg.train.eval_batch_size, **common),
        "test": DeviceBatches(*parts["test"], cfg.train.eval_batch_size, **common),
    }
    info = {"source": str(source), "train": len(tr), "val": len(va), "test": len(te), "mean": mean, "std": std}
    if palette is not None:
        info["colour_class"] = data_cfg.colour_class
    return Splits(**batches, classes=classes, shape=tuple(parts["train"][0].shape[1:]), info=info,
                  originals=originals, palette=palette)
