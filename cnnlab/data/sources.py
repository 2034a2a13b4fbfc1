"""Where each dataset's files may be, and how to decode them into uint8 tensors.

A source lists the places it looks (so `cnnlab data list` and the missing-data message can name
them), finds the first that exists, and decodes it. Archives are extracted once into the cache.
"""
from __future__ import annotations

import gzip
import pickle
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from cnnlab.data.root import cache_dir
from cnnlab.errors import CnnlabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass
class ImageSet:
    """Images as uint8 (N, C, H, W); labels as int64 (N,) or per-pixel uint8 (N, H, W); the class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Candidate:
    """One place a dataset may be: a path, what kind of thing it is there, and how to read it."""

    path: Path
    kind: str
    read: Callable[[Path], tuple[ImageSet, ImageSet]]

    def exists(self) -> bool:
        return self.path.exists()


# ---- decoding helpers -------------------------------------------------------------------------


def _open_maybe_gz(path: Path) -> bytes:
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        return f.read()


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (the MNIST format): magic, dims, then unsigned bytes."""
    try:
        data = _open_maybe_gz(path)
    except (OSError, EOFError) as e:
        raise CnnlabError(f"cannot read IDX file {path}: {e}; the file is corrupt or truncated, get it again") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise CnnlabError(f"{path} is not an IDX file of unsigned bytes (bad magic number); get the file again")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    start, count = 4 + 4 * ndim, int(np.prod(dims))
    if len(data) - start != count:
        raise CnnlabError(f"{path} is truncated: it declares {count} bytes of data and holds {len(data) - start}; get it again")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims)


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise CnnlabError(f"{folder} lacks {stem} (or {stem}.gz); an IDX dataset needs all of: {', '.join(IDX_FILES)}")


def read_idx_folder(folder: Path, classes: Optional[list[str]] = None) -> tuple[ImageSet, ImageSet]:
    sets = []
    for split in ("train", "t10k"):
        images = read_idx(_idx_file(folder, f"{split}-images-idx3-ubyte"))
        labels = read_idx(_idx_file(folder, f"{split}-labels-idx1-ubyte"))
        if len(images) != len(labels):
            raise CnnlabError(f"{folder}: {split} has {len(images)} images but {len(labels)} labels")
        sets.append((torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))))
    if classes is None:
        classes = [str(i) for i in range(int(max(s[1].max() for s in sets)) + 1)]
    return ImageSet(*sets[0], classes), ImageSet(*sets[1], classes)


def has_idx_files(folder: Path) -> bool:
    return all((folder / s).is_file() or (folder / (s + ".gz")).is_file() for s in IDX_FILES)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's python batches without running arbitrary code: numpy arrays and builtins only."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_cifar_batches(folder: Path) -> tuple[ImageSet, ImageSet]:
    def batch(name: str):
        path = folder / name
        try:
            with open(path, "rb") as f:
                d = _NumpyOnlyUnpickler(f, encoding="bytes").load()
            return np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(d[b"labels"], dtype=np.int64)
        except FileNotFoundError:
            raise CnnlabError(f"{folder} lacks {name}; the official CIFAR-10 folder holds data_batch_1..5 and test_batch") from None
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
            raise CnnlabError(f"{path} is not a readable CIFAR-10 batch ({e}); get the file again") from None

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = batch("test_batch")
    train = ImageSet(torch.from_numpy(np.concatenate([p[0] for p in parts])), torch.from_numpy(np.concatenate([p[1] for p in parts])), CIFAR10_CLASSES)
    return train, ImageSet(torch.from_numpy(x_test), torch.from_numpy(y_test), CIFAR10_CLASSES)


def decode_image(path: Path, size: Optional[int] = None, mode: str = "RGB") -> torch.Tensor:
    """One image file as uint8 (C, H, W); a corrupt file is named in the error.

    mode "RGB" or "L" converts (and resizes bilinearly); mode None keeps the stored values (a mask
    of instance numbers) and resizes with nearest neighbours, so no new values are invented.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert(mode) if mode else img
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR if mode else Image.NEAREST)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CnnlabError(f"cannot decode image {path}: {e}; remove or replace the file") from None
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def read_split_folder(folder: Path, classes: list[str], size: Optional[int]) -> ImageSet:
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).iterdir()) if (folder / name).is_dir() else []:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(decode_image(path, size))
                labels.append(label)
                if images[-1].shape != images[0].shape:
                    raise CnnlabError(
                        f"{path} is {tuple(images[-1].shape[1:])} but earlier images are {tuple(images[0].shape[1:])}; "
                        f"set data.image_size to resize all images to one size"
                    )
    if not images:
        raise CnnlabError(f"{folder} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))} in {folder}/<class>/)")
    return ImageSet(torch.stack(images), torch.tensor(labels, dtype=torch.int64), classes)


def read_image_folder(root: Path, size: Optional[int] = None) -> tuple[ImageSet, ImageSet]:
    """`root/{train,test}/<class>/*.png|jpg`; classes are the sorted folder names under train/."""
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise CnnlabError(f"image folder {root} has no {split}/ folder; the layout is {root}/{{train,test}}/<class>/*.png|jpg")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise CnnlabError(f"{root / 'train'} has no class folders; the layout is {root}/train/<class>/*.png|jpg")
    return read_split_folder(root / "train", classes, size), read_split_folder(root / "test", classes, size)


# ---- archives -----------------------------------------------------------------------------------


def extract_once(archive: Path) -> Path:
    """Extract an archive into the cache (once; a marker file says it finished) and return the folder."""
    stem = archive.name.split(".")[0]
    target = cache_dir() / "extracted" / f"{stem}-{archive.stat().st_size}"
    done = target / ".complete"
    if done.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                z.extractall(target)
        else:
            with tarfile.open(archive) as t:
                t.extractall(target, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as e:
        raise CnnlabError(f"cannot extract {archive}: {e}; the archive is corrupt or truncated, get it again") from None
    done.touch()
    return target


def find_inside(folder: Path, test: Callable[[Path], bool], depth: int = 3) -> Optional[Path]:
    """The first folder at most `depth` levels below `folder` (itself included) that passes `test`."""
    level = [folder]
    for _ in range(depth + 1):
        for f in level:
            if test(f):
                return f
        level = [c for f in level for c in sorted(f.iterdir()) if c.is_dir()]
    return None


def _is_image_root(f: Path) -> bool:
    return (f / "train").is_dir() and (f / "test").is_dir()


def _is_cifar_batches(f: Path) -> bool:
    return (f / "data_batch_1").is_file()


def read_cifar_anything(path: Path) -> tuple[ImageSet, ImageSet]:
    """CIFAR-10 as official batches, an image folder, or an archive of either."""
    folder = extract_once(path) if path.is_file() else path
    if (found := find_inside(folder, _is_cifar_batches)) is not None:
        return read_cifar_batches(found)
    if (found := find_inside(folder, _is_image_root)) is not None:
        train, test = read_image_folder(found)
        if train.classes != CIFAR10_CLASSES:
            raise CnnlabError(f"{found} has classes {train.classes}, not CIFAR-10's {CIFAR10_CLASSES}")
        return train, test
    raise CnnlabError(f"{path} holds neither CIFAR-10 python batches (data_batch_1, ...) nor a train/ and test/ image folder")


def read_idx_anything(path: Path, classes: Optional[list[str]] = None) -> tuple[ImageSet, ImageSet]:
    folder = extract_once(path) if path.is_file() else path
    found = find_inside(folder, has_idx_files)
    if found is None:
        raise CnnlabError(f"{path} does not hold the four IDX files {', '.join(IDX_FILES)} (optionally .gz)")
    return read_idx_folder(found, classes)


def read_image_folder_anything(path: Path, size: Optional[int]) -> tuple[ImageSet, ImageSet]:
    folder = extract_once(path) if path.is_file() else path
    found = find_inside(folder, _is_image_root)
    if found is None:
        raise CnnlabError(f"{path} has no train/ and test/ folders; the layout is root/{{train,test}}/<class>/*.png|jpg")
    return read_image_folder(found, size)


def _is_pennfudan(f: Path) -> bool:
    return (f / "PNGImages").is_dir() and (f / "PedMasks").is_dir()


def read_pennfudan(path: Path, size: int) -> tuple[ImageSet, ImageSet]:
    """Penn-Fudan pedestrians: photos and masks resized to size x size, person (any instance > 0) vs background.

    The dataset has no official test split: everything is returned as `train` (test is empty) and
    the seeded split holds out validation and test images.
    """
    folder = extract_once(path) if path.is_file() else path
    found = find_inside(folder, _is_pennfudan)
    if found is None:
        raise CnnlabError(f"{path} holds no PennFudanPed/PNGImages and PedMasks folders")
    images, masks = [], []
    for photo in sorted((found / "PNGImages").glob("*.png")):
        mask_path = found / "PedMasks" / f"{photo.stem}_mask.png"
        if not mask_path.is_file():
            raise CnnlabError(f"{photo} has no mask {mask_path}; the dataset is incomplete, get it again")
        images.append(decode_image(photo, size))
        mask = decode_image(mask_path, size, mode=None)
        if mask.shape[0] != 1:
            raise CnnlabError(f"{mask_path} is not a single-channel mask of instance numbers")
        masks.append((mask[0] > 0).to(torch.uint8))
    if not images:
        raise CnnlabError(f"{found / 'PNGImages'} holds no .png photos")
    classes = ["background", "person"]
    empty = ImageSet(torch.empty(0, 3, size, size, dtype=torch.uint8), torch.empty(0, size, size, dtype=torch.uint8), classes)
    return ImageSet(torch.stack(images), torch.stack(masks), classes), empty


# ---- the datasets -------------------------------------------------------------------------------


def candidates(dataset: str, root: Path, path: Optional[str] = None, image_size: Optional[int] = None) -> list[Candidate]:
    """Every place `dataset` is looked for, in order."""
    if dataset == "cifar10":
        names = [("cifar-10-batches-py", "official python batches"), ("cifar10", "image folder"),
                 ("cifar-10-python.tar.gz", "official archive"), ("cifar10-jpeg.tar.gz", "image-folder archive"),
                 ("cifar10.tar.gz", "archive")]
        return [Candidate(root / n, k, read_cifar_anything) for n, k in names]
    if dataset in ("fashion_mnist", "mnist"):
        classes = FASHION_CLASSES if dataset == "fashion_mnist" else [str(i) for i in range(10)]
        read = lambda p: read_idx_anything(p, classes)  # noqa: E731
        if dataset == "fashion_mnist":
            folders = [root / "fashion-mnist", root / "fashion_mnist", root / "FashionMNIST" / "raw", DEBIAN_FASHION]
        else:
            folders = [root / "mnist", root / "MNIST" / "raw"]
        return [Candidate(f, "IDX files", read) for f in folders]
    if dataset == "pennfudan":
        read = lambda p: read_pennfudan(p, image_size or 128)  # noqa: E731
        names = [("PennFudanPed", "folder"), ("pennfudanped.tar.gz", "archive"), ("PennFudanPed.zip", "archive")]
        return [Candidate(root / n, k, read) for n, k in names]
    if dataset in ("idx", "imagefolder"):
        if path is None:
            raise CnnlabError(f"data.dataset: {dataset} needs data.path, the folder or archive that holds it")
        p = Path(path).expanduser()
        p = p if p.is_absolute() else root / p
        if dataset == "idx":
            return [Candidate(p, "IDX files", read_idx_anything)]
        return [Candidate(p, "image folder", lambda q: read_image_folder_anything(q, image_size))]
    raise CnnlabError(f"unknown dataset '{dataset}'")


HOW_TO_GET = {
    "cifar10": "put cifar10-jpeg.tar.gz (or the official cifar-10-python.tar.gz) in the data root, or run with --download",
    "fashion_mnist": "apt-get install dataset-fashion-mnist (Debian), put the four IDX files in <data root>/fashion-mnist/, or run with --download",
    "mnist": "put the four MNIST IDX files in <data root>/mnist/, or run with --download",
    "pennfudan": "put pennfudanped.tar.gz (or PennFudanPed.zip, or the PennFudanPed folder) in the data root",
    "idx": "point data.path at a folder (or archive) with the four IDX files",
    "imagefolder": "point data.path at a folder root/{train,test}/<class>/*.png|jpg (or an archive of one)",
}


def locate(dataset: str, root: Path, path: Optional[str] = None, image_size: Optional[int] = None) -> Candidate:
    found = [c for c in candidates(dataset, root, path, image_size) if c.exists()]
    if found:
        return found[0]
    looked = "\n  ".join(f"{c.path} ({c.kind})" for c in candidates(dataset, root, path, image_size))
    raise CnnlabError(f"{dataset} was not found. Looked for:\n  {looked}\nTo get it: {HOW_TO_GET[dataset]}. "
                      f"The data root is {root} (set it with --data-dir or CNNLAB_DATA).")


def download(dataset: str, root: Path) -> None:
    """Fetch the official files through torchvision (only when the user asks with --download)."""
    import torchvision

    classes = {"cifar10": torchvision.datasets.CIFAR10, "fashion_mnist": torchvision.datasets.FashionMNIST,
               "mnist": torchvision.datasets.MNIST}
    if dataset not in classes:
        raise CnnlabError(f"--download works for {', '.join(classes)}, not {dataset}")
    try:
        for train in (True, False):
            classes[dataset](str(root), train=train, download=True)
    except Exception as e:  # network errors come in many types; the message is what matters
        raise CnnlabError(f"downloading {dataset} into {root} failed: {e}. {HOW_TO_GET[dataset]}") from None
