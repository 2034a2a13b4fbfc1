"""Every dataset cnnlab knows, one record each: adding a dataset means adding one record here.

Config validation (allowed names, which task fits), `cnnlab data list`, the search for files, the
missing-data message, --download and the model's input shape all read these records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cnnlab.data.decoders import CIFAR_BATCHES, IDX, IMAGE_FOLDER, PENNFUDAN, Layout
from cnnlab.errors import CnnlabError, did_you_mean

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist package


@dataclass(frozen=True)
class Dataset:
    """One dataset: where its files may be, how they decode, and what the files fix about it."""

    name: str
    layouts: tuple[Layout, ...]  # how a found folder or archive decodes, tried in this order
    how_to_get: str  # what to put where (the missing-data message adds --download where torchvision can fetch it)
    places: tuple[tuple[str, str], ...] = ()  # (path under the data root, or absolute; what is there), in search order
    given_path: Optional[str] = None  # datasets with no place of their own: what data.path must point at
    shape: Optional[tuple[int, int, int]] = None  # (C, H, W) when the files fix it (data.image_size is then ignored)
    classes: Optional[list[str]] = None  # class names when the files fix them
    masks: bool = False  # per-pixel classes: the dataset is for task: segment, and only it is
    default_size: Optional[int] = None  # data.image_size when none is given
    torchvision: Optional[str] = None  # the torchvision.datasets class that --download uses

    def decode_size(self, image_size: Optional[int]) -> Optional[int]:
        """The square size images are decoded at: none where the files fix it, else data.image_size or the default."""
        return None if self.shape else (image_size or self.default_size)


DATASETS = {
    d.name: d
    for d in (
        Dataset(
            "cifar10",
            (CIFAR_BATCHES, IMAGE_FOLDER),
            "put cifar10-jpeg.tar.gz (or the official cifar-10-python.tar.gz) in the data root",
            places=(
                ("cifar-10-batches-py", "official python batches"),
                ("cifar10", "image folder"),
                ("cifar-10-python.tar.gz", "official archive"),
                ("cifar10-jpeg.tar.gz", "image-folder archive"),
                ("cifar10.tar.gz", "archive"),
            ),
            shape=(3, 32, 32),
            classes=CIFAR10_CLASSES,
            torchvision="CIFAR10",
        ),
        Dataset(
            "fashion_mnist",
            (IDX,),
            "apt-get install dataset-fashion-mnist (Debian), or put the four IDX files in <data root>/fashion-mnist/",
            places=(
                ("fashion-mnist", "IDX files"),
                ("fashion_mnist", "IDX files"),
                ("FashionMNIST/raw", "IDX files"),
                (str(DEBIAN_FASHION), "IDX files"),
            ),
            shape=(1, 28, 28),
            classes=FASHION_CLASSES,
            torchvision="FashionMNIST",
        ),
        Dataset(
            "mnist",
            (IDX,),
            "put the four MNIST IDX files in <data root>/mnist/",
            places=(("mnist", "IDX files"), ("MNIST/raw", "IDX files")),
            shape=(1, 28, 28),
            classes=[str(i) for i in range(10)],
            torchvision="MNIST",
        ),
        Dataset(
            "idx", (IDX,), "point data.path at a folder (or archive) with the four IDX files", given_path="IDX files"
        ),
        Dataset(
            "imagefolder",
            (IMAGE_FOLDER,),
            "point data.path at a folder root/{train,test}/<class>/*.png|jpg (or an archive of one)",
            given_path="image folder",
        ),
        Dataset(
            "pennfudan",
            (PENNFUDAN,),
            "put pennfudanped.tar.gz (or PennFudanPed.zip, or the PennFudanPed folder) in the data root",
            places=(("PennFudanPed", "folder"), ("pennfudanped.tar.gz", "archive"), ("PennFudanPed.zip", "archive")),
            classes=["background", "person"],
            masks=True,
            default_size=128,
        ),
    )
}


def lookup(name: str) -> Dataset:
    if name not in DATASETS:
        raise CnnlabError(
            f"unknown dataset '{name}'{did_you_mean(name, DATASETS)}; choose one of: {', '.join(DATASETS)}"
        )
    return DATASETS[name]
