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
from cnnlab.data.progress import Progress
from cnnlab.data.registry import lookup
from cnnlab.data.sources import locate
from cnnlab.data.splits import class_balanced_subset, random_split, random_subset, stratified_split
from cnnlab.errors import CnnlabError, did_you_mean


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
    """((C, H, W), number of classes) the model sees: from the registry where the files fix them, else from the
    loaded images; data.input_size and data.classes change them."""
    record = lookup(data_cfg.dataset)
    if record.shape is not None:
        shape, classes = record.shape, len(record.classes)
    else:
        train, _, _ = load_images(data_cfg, root)
        shape, classes = tuple(train.images.shape[1:]), len(train.classes)
    if data_cfg.input_size:
        shape = (shape[0], data_cfg.input_size, data_cfg.input_size)
    return shape, len(data_cfg.classes) if data_cfg.classes else classes


def load_images(data_cfg, root: Path, progress: Optional[Progress] = None) -> tuple[ImageSet, ImageSet, Path]:
    """(train, test, where they came from) for the configured dataset, via the tensor cache; `progress` hears
    how far a first decode is."""
    found = locate(data_cfg.dataset, root, data_cfg.path, data_cfg.image_size)
    size = lookup(data_cfg.dataset).decode_size(data_cfg.image_size)
    train, test = load_cached(data_cfg.dataset, found, f"size{size}" if size else "", progress)
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
    counts = torch.bincount(images.labels.long(), minlength=len(images.classes)).tolist()
    present = [(count, name) for count, name in zip(counts, images.classes) if count]
    share = -(-n // len(present))  # the first n % K classes take one more
    smallest, name = min(present)
    if smallest < share:  # balance is what a subset promises: taking fewer of one class would break it unsaid
        raise CnnlabError(
            f"data.{key}={n} takes up to {share} images of each of {len(present)} classes, but class "
            f"'{name}' has only {smallest}; ask for at most {smallest * len(present)} (as many of "
            f"each class as the smallest has) or leave data.{key} out"
        )
    return class_balanced_subset(images.labels, n, gen)


def per_class(labels: torch.Tensor, classes: list[str]) -> dict[str, int]:
    """How many examples of each class a split holds (summary.json records what was used, not what was asked)."""
    return dict(zip(classes, torch.bincount(labels.long(), minlength=len(classes)).tolist()))


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
    if len(tr) == 0:
        raise CnnlabError(
            f"the training split is empty: data.val_fraction={data_cfg.val_fraction} of "
            f"{len(pool)} images leaves none to train on; lower data.val_fraction or raise data.train_subset"
        )
    return pool[tr], pool[va], test_idx


@dataclass(frozen=True)
class Statistics:
    """Per-channel mean and std (of pixels scaled to 0..1) that inputs are normalised with, and where they came from."""

    mean: list[float]
    std: list[float]
    source: str  # e.g. "training split", or the pretrained weights' name


def channel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (unbiased) std of uint8 images (N, C, H, W), in units of 0..1, exactly, from each
    channel's histogram of the 256 values: no float copy of every pixel (CIFAR-10's would be 600 MB)."""
    counts = torch.stack(
        [torch.bincount(images[:, ch].reshape(-1), minlength=256) for ch in range(images.shape[1])]
    ).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    n = counts.sum(1)
    mean = (counts * values).sum(1) / n
    var = (counts * (values - mean[:, None]) ** 2).sum(1) / (n - 1).clamp_min(1)
    return mean.float(), var.sqrt().float()


def normalisation(
    data_cfg, images: torch.Tensor, fixed: Optional[Statistics] = None
) -> tuple[torch.Tensor, torch.Tensor, list, list]:
    """Per-channel (scale, shift) so that x = img*scale + shift is normalised, then y = a*x + b applied.
    The statistics are the training split's, or `fixed` ones (those pretrained weights were trained with)."""
    c = images.shape[1]
    if data_cfg.normalize and fixed is not None:
        mean, std = torch.tensor(fixed.mean), torch.tensor(fixed.std)
    elif data_cfg.normalize:
        mean, std = channel_statistics(images)
        std = std.clamp_min(1e-3)
    else:
        mean, std = torch.zeros(c), torch.ones(c)
    scale = data_cfg.affine_a / (255 * std)
    shift = data_cfg.affine_a * (-mean / std) + data_cfg.affine_b
    return scale, shift, mean.tolist(), std.tolist()


def keep_classes(images: ImageSet, names: list[str], key: str = "data.classes", also: str = "") -> ImageSet:
    """Only the images of the classes `names`, relabelled 0..K-1 in that order; `key` and `also` word the refusal."""
    unknown = [n for n in names if n not in images.classes]
    if unknown:
        close = "".join(did_you_mean(n, images.classes) for n in unknown)
        raise CnnlabError(
            f"{key}: {', '.join(repr(n) for n in unknown)} is not a class of this dataset{close}; "
            "choose from: "
            f"{', '.join(images.classes)}{also}"
        )
    new_label = torch.full((len(images.classes),), -1, dtype=torch.long)
    new_label[[images.classes.index(n) for n in names]] = torch.arange(len(names))
    mapped = new_label[images.labels.long()]
    idx = torch.nonzero(mapped >= 0).flatten()
    return ImageSet(images.images[idx], mapped[idx].to(images.labels.dtype), list(names))


def only_class(images: ImageSet, name: str) -> ImageSet:
    return images if name == "all" else keep_classes(images, [name], "data.colour_class", ", or all")


def colourize(train: ImageSet, test: ImageSet, tr, va, te, data_cfg) -> tuple[dict, torch.Tensor, dict]:
    """Greyscale inputs and nearest-palette-colour targets; the palette is fitted on training pixels only."""
    if train.images.shape[1] != 3:
        raise CnnlabError(
            f"task colourize needs colour images; {data_cfg.dataset} has {train.images.shape[1]} channel(s)"
        )
    palette = fit_palette(train.images[tr], data_cfg.palette_size, seed=data_cfg.split_seed)
    parts = {}
    for split, source, idx in (("train", train, tr), ("val", train, va), ("test", test, te)):
        rgb = source.images[idx]
        parts[split] = (to_grey(rgb), quantise(rgb, palette))
    originals = {"val": train.images[va], "test": test.images[te]}
    return parts, palette, originals


def _device_batches(cfg, parts: dict, device: torch.device, scale, shift) -> dict:
    """The three splits as batches on the device: the training split shuffled and augmented, seeded by the run."""
    train, aug = cfg.train, cfg.data.augment
    common = dict(
        device=device, scale=scale, shift=shift, channels_last=train.channels_last, input_size=cfg.data.input_size
    )
    return {
        "train": DeviceBatches(
            *parts["train"],
            train.batch_size,
            shuffle=True,
            crop_padding=aug.crop_padding,
            flip=aug.flip,
            translate=aug.translate,
            zoom=aug.zoom,
            drop_last=train.drop_last,
            seed=cfg.seed,
            **common,
        ),
        "val": DeviceBatches(*parts["val"], train.eval_batch_size, **common),
        "test": DeviceBatches(*parts["test"], train.eval_batch_size, **common),
    }


def prepare(
    cfg, root: Path, device: torch.device, statistics: Optional[Statistics] = None, progress: Optional[Progress] = None
) -> Splits:
    """Everything the engine needs from the data section of a config; inputs are normalised with `statistics`
    when given (pretrained weights' own), else with the training split's (`progress`: see load_images)."""
    data_cfg = cfg.data
    train, test, source = load_images(data_cfg, root, progress)
    if data_cfg.classes:
        train, test = keep_classes(train, data_cfg.classes), keep_classes(test, data_cfg.classes)
    if cfg.task == "colourize":
        train, test = only_class(train, data_cfg.colour_class), only_class(test, data_cfg.colour_class)
    train, test = hold_out_test(data_cfg, train, test)
    tr, va, te = split_indices(data_cfg, train, test)
    palette, originals = None, {}
    if cfg.task == "colourize":
        parts, palette, originals = colourize(train, test, tr, va, te, data_cfg)
        classes = [f"colour {i}" for i in range(len(palette))]
    else:
        parts = {
            "train": (train.images[tr], train.labels[tr]),
            "val": (train.images[va], train.labels[va]),
            "test": (test.images[te], test.labels[te]),
        }
        classes = train.classes
        if cfg.task == "classify" and len(classes) < 2:  # nothing to tell apart: the loss is 0 from the start
            raise CnnlabError(
                f"{source} holds one class ({classes[0]}); a classifier needs at least two: add a class "
                f"folder, or choose a dataset of several classes"
            )
    scale, shift, mean, std = normalisation(data_cfg, parts["train"][0], statistics)
    batches = _device_batches(cfg, parts, device, scale, shift)
    info = {
        "source": str(source),
        "train": len(tr),
        "val": len(va),
        "test": len(te),
        "mean": mean,
        "std": std,
        "normalised_with": (statistics.source if statistics else "training split") if data_cfg.normalize else "none",
    }
    if cfg.task != "colourize" and train.labels.dim() == 1:
        info["per_class"] = {split: per_class(labels, classes) for split, (_, labels) in parts.items()}
    shape = tuple(parts["train"][0].shape[1:])
    if data_cfg.input_size:
        info["input_size"] = data_cfg.input_size
        shape = (shape[0], data_cfg.input_size, data_cfg.input_size)
    if palette is not None:
        info["colour_class"] = data_cfg.colour_class
    return Splits(**batches, classes=classes, shape=shape, info=info, originals=originals, palette=palette)
