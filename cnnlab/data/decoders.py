"""How each file layout decodes into uint8 tensors: IDX files, CIFAR python batches, image folders, Penn-Fudan.

Decoders know formats, not places: `sources` finds a folder (or archive) and `archives` finds the
layout inside it. Every decoder takes (folder, image size or None, class names or None, progress or
None) and returns (train, test); a corrupt or truncated file is named in the error.
"""

from __future__ import annotations

import gzip
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from cnnlab.data.progress import Progress, counter
from cnnlab.errors import CnnlabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass
class ImageSet:
    """Images as uint8 (N, C, H, W); labels as int64 (N,) or per-pixel uint8 (N, H, W); the class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


Classes = Optional[Sequence[str]]


@dataclass(frozen=True)
class Layout:
    """One way a dataset's files sit in a folder: how to recognise that folder and how to decode it."""

    what: str  # for messages, e.g. "the four IDX files ..."
    recognise: Callable[[Path], bool]
    read: Callable[[Path, Optional[int], Classes, Optional[Progress]], tuple[ImageSet, ImageSet]]


def _class_names(classes: Classes, *labels: torch.Tensor) -> list[str]:
    """The given names, or the label numbers as names when the files carry numbers only."""
    return list(classes) if classes else [str(i) for i in range(int(max(y.max() for y in labels)) + 1)]


# ---- IDX (MNIST, Fashion-MNIST) -----------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (the MNIST format, optionally gzipped): magic, dims, then unsigned bytes.

    Not torchvision's read_sn3_pascalvincent_tensor: it opens only uncompressed files (Debian ships
    .gz) and checks with bare asserts, so a truncated file would not be named.
    """
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise CnnlabError(f"cannot read IDX file {path}: {e}; the file is corrupt or truncated, get it again") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise CnnlabError(f"{path} is not an IDX file of unsigned bytes (bad magic number); get the file again")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    start, count = 4 + 4 * ndim, int(np.prod(dims))
    if len(data) - start != count:
        raise CnnlabError(
            f"{path} is truncated: it declares {count} bytes of data and holds {len(data) - start}; get it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims)


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise CnnlabError(f"{folder} lacks {stem} (or {stem}.gz); an IDX dataset needs all of: {', '.join(IDX_FILES)}")


def has_idx_files(folder: Path) -> bool:
    return all((folder / s).is_file() or (folder / (s + ".gz")).is_file() for s in IDX_FILES)


def read_idx_folder(
    folder: Path, size: Optional[int] = None, classes: Classes = None, progress: Optional[Progress] = None
) -> tuple[ImageSet, ImageSet]:
    """The four IDX files; without class names, the classes are the label numbers. IDX images are not resized."""
    sets = []
    tick = counter(progress, 2, f"reading the IDX files in {folder}")
    for split in ("train", "t10k"):
        images = read_idx(_idx_file(folder, f"{split}-images-idx3-ubyte"))
        labels = read_idx(_idx_file(folder, f"{split}-labels-idx1-ubyte"))
        tick()
        if len(images) != len(labels):
            raise CnnlabError(f"{folder}: {split} has {len(images)} images but {len(labels)} labels")
        sets.append((torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))))
    names = _class_names(classes, sets[0][1], sets[1][1])
    return ImageSet(*sets[0], names), ImageSet(*sets[1], names)


# ---- CIFAR python batches -----------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's python batches without running arbitrary code: numpy arrays and builtins only."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _is_cifar_batches(folder: Path) -> bool:
    return (folder / "data_batch_1").is_file()


def read_cifar_batches(
    folder: Path, size: Optional[int] = None, classes: Classes = None, progress: Optional[Progress] = None
) -> tuple[ImageSet, ImageSet]:
    """data_batch_1..5 and test_batch, 32x32 as stored; the batches carry label numbers, `classes` names them."""
    tick = counter(progress, 6, f"reading the CIFAR-10 python batches in {folder}")

    def batch(name: str):
        path = folder / name
        try:
            with open(path, "rb") as f:
                d = _NumpyOnlyUnpickler(f, encoding="bytes").load()
            tick()
            return np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(
                d[b"labels"], dtype=np.int64
            )
        except FileNotFoundError:
            raise CnnlabError(
                f"{folder} lacks {name}; the official CIFAR-10 folder holds data_batch_1..5 and test_batch"
            ) from None
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
            raise CnnlabError(f"{path} is not a readable CIFAR-10 batch ({e}); get the file again") from None

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = batch("test_batch")
    y_train = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    names = _class_names(classes, y_train, torch.from_numpy(y_test))
    train = ImageSet(torch.from_numpy(np.concatenate([p[0] for p in parts])), y_train, names)
    return train, ImageSet(torch.from_numpy(x_test), torch.from_numpy(y_test), names)


# ---- image files and folders --------------------------------------------------------------------


def decode_image(
    path: Path, size: Union[int, tuple[int, int], None] = None, mode: Optional[str] = "RGB"
) -> torch.Tensor:
    """One image file as uint8 (C, H, W), resized to size x size or to size (H, W);
    a corrupt file is named in the error.

    mode "RGB" or "L" converts (and resizes bilinearly); mode None keeps the stored values (a mask
    of instance numbers) and resizes with nearest neighbours, so no new values are invented.
    """
    from PIL import Image, UnidentifiedImageError

    wanted = None if size is None else ((size, size) if isinstance(size, int) else (size[1], size[0]))  # PIL: (W, H)
    try:
        with Image.open(path) as img:
            img = img.convert(mode) if mode else img
            if wanted is not None and img.size != wanted:
                img = img.resize(wanted, Image.BILINEAR if mode else Image.NEAREST)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CnnlabError(f"cannot decode image {path}: {e}; remove or replace the file") from None
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def image_files(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """(file, label) of every image in `folder`/<class>/, classes in the order given, files sorted by name."""
    named = [
        (path, label)
        for label, name in enumerate(classes)
        for path in (sorted((folder / name).iterdir()) if (folder / name).is_dir() else [])
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    odd = [path for path, _ in named if not path.is_file()]  # reading a FIFO named x.png would wait for ever
    if odd:
        print(
            f"notice: skipping {len(odd)} image name(s) that are no regular file (a folder, a FIFO, a device, a "
            f"broken link), e.g. {odd[0]}",
            file=sys.stderr,
        )
    return [(path, label) for path, label in named if path.is_file()]


def decode_split(
    folder: Path, files: list[tuple[Path, int]], classes: list[str], size: Optional[int], tick: Callable[[], None]
) -> ImageSet:
    """The images `files` lists (all of one size after resizing), with their labels."""
    if not files:
        raise CnnlabError(
            f"{folder} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))} in {folder}/<class>/)"
        )
    images = []
    for path, _ in files:
        images.append(decode_image(path, size))
        tick()
        if images[-1].shape != images[0].shape:
            raise CnnlabError(
                f"{path} is {tuple(images[-1].shape[1:])} but earlier images are {tuple(images[0].shape[1:])}; "
                f"set data.image_size to resize all images to one size"
            )
    return ImageSet(torch.stack(images), torch.tensor([label for _, label in files], dtype=torch.int64), classes)


def _is_image_root(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def read_image_folder(
    root: Path, size: Optional[int] = None, classes: Classes = None, progress: Optional[Progress] = None
) -> tuple[ImageSet, ImageSet]:
    """`root/{train,test}/<class>/*.png|jpg`; classes are the sorted folder names under train/, the same under test/
    (and checked against `classes`)."""
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise CnnlabError(
                f"image folder {root} has no {split}/ folder; the layout is {root}/{{train,test}}/<class>/*.png|jpg"
            )
    found = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not found:
        raise CnnlabError(f"{root / 'train'} has no class folders; the layout is {root}/train/<class>/*.png|jpg")
    in_test = sorted(p.name for p in (root / "test").iterdir() if p.is_dir())
    if in_test != found:
        raise CnnlabError(
            f"image folder {root}: train/ has the classes {found} but test/ has {in_test}; "
            f"give both splits the same class folders"
        )
    if classes and found != list(classes):
        raise CnnlabError(f"{root} has classes {found}, not the dataset's {list(classes)}")
    files = {split: image_files(root / split, found) for split in ("train", "test")}
    total = sum(map(len, files.values()))
    tick = counter(progress, total, f"decoding {total:,} images in {root}")
    return (
        decode_split(root / "train", files["train"], found, size, tick),
        decode_split(root / "test", files["test"], found, size, tick),
    )


# ---- Penn-Fudan pedestrians ---------------------------------------------------------------------


def _is_pennfudan(folder: Path) -> bool:
    return (folder / "PNGImages").is_dir() and (folder / "PedMasks").is_dir()


def read_pennfudan(
    folder: Path, size: Optional[int], classes: Classes, progress: Optional[Progress] = None
) -> tuple[ImageSet, ImageSet]:
    """Photos and masks resized to size x size; a pixel is class 1 (person) where any instance number is > 0.

    The dataset has no official test split: everything is returned as `train` (test is empty) and
    the seeded split holds out validation and test images.
    """
    images, masks = [], []
    photos = sorted((folder / "PNGImages").glob("*.png"))
    tick = counter(progress, len(photos), f"decoding {len(photos)} photos and their masks in {folder}")
    for photo in photos:
        mask_path = folder / "PedMasks" / f"{photo.stem}_mask.png"
        if not mask_path.is_file():
            raise CnnlabError(f"{photo} has no mask {mask_path}; the dataset is incomplete, get it again")
        images.append(decode_image(photo, size))
        mask = decode_image(mask_path, size, mode=None)
        if mask.shape[0] != 1:
            raise CnnlabError(f"{mask_path} is not a single-channel mask of instance numbers")
        masks.append((mask[0] > 0).to(torch.uint8))
        tick()
    if not images:
        raise CnnlabError(f"{folder / 'PNGImages'} holds no .png photos")
    names = list(classes)
    empty = ImageSet(
        torch.empty(0, 3, size, size, dtype=torch.uint8), torch.empty(0, size, size, dtype=torch.uint8), names
    )
    return ImageSet(torch.stack(images), torch.stack(masks), names), empty


IDX = Layout(f"the four IDX files {', '.join(IDX_FILES)} (optionally .gz)", has_idx_files, read_idx_folder)
CIFAR_BATCHES = Layout("CIFAR-10 python batches (data_batch_1..5, test_batch)", _is_cifar_batches, read_cifar_batches)
IMAGE_FOLDER = Layout("an image folder {train,test}/<class>/*.png|jpg", _is_image_root, read_image_folder)
PENNFUDAN = Layout("PennFudanPed's PNGImages and PedMasks folders", _is_pennfudan, read_pennfudan)
