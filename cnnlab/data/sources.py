"""Where a dataset's files are: the places its registry record names, the first that exists, and --download.

A source lists the places it looks (so `cnnlab data list` and the missing-data message can name
them) and finds the first that exists; decoding it is the record's layouts' job.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

from cnnlab.data.archives import read_folder_or_archive
from cnnlab.data.decoders import ImageSet
from cnnlab.data.registry import DATASETS, lookup
from cnnlab.errors import CnnlabError


@dataclass
class Candidate:
    """One place a dataset may be: a path, what kind of thing it is there, and how to read it."""

    path: Path
    kind: str
    read: Callable[..., tuple[ImageSet, ImageSet]]  # (path, progress=None)

    def exists(self) -> bool:
        return self.path.exists()


def candidates(
    dataset: str, root: Path, path: Optional[str] = None, image_size: Optional[int] = None
) -> list[Candidate]:
    """Every place `dataset` is looked for, in order (absolute places stay absolute under `root / place`)."""
    record = lookup(dataset)
    read = partial(
        read_folder_or_archive, layouts=record.layouts, size=record.decode_size(image_size), classes=record.classes
    )
    if record.given_path:
        if path is None:
            raise CnnlabError(f"data.dataset: {dataset} needs data.path, the folder or archive that holds it")
        return [Candidate(root / Path(path).expanduser(), record.given_path, read)]
    return [Candidate(root / place, kind, read) for place, kind in record.places]


def locate(dataset: str, root: Path, path: Optional[str] = None, image_size: Optional[int] = None) -> Candidate:
    """The first place that exists; otherwise an error naming every place looked at and how to get the dataset."""
    places = candidates(dataset, root, path, image_size)
    found = [c for c in places if c.exists()]
    if found:
        return found[0]
    looked = "\n  ".join(f"{c.path} ({c.kind})" for c in places)
    record = lookup(dataset)
    raise CnnlabError(
        f"{dataset} was not found. Looked for:\n  {looked}\nTo get it: {record.how_to_get}"
        f"{', or run with --download' if record.torchvision else ''}. "
        f"The data root is {root} (set it with --data-dir or CNNLAB_DATA)."
    )


def download(dataset: str, root: Path) -> Optional[Path]:
    """Fetch the official files through torchvision (only when the user asks with --download) unless the
    dataset is already in one of its places; returns that place, or None after a download."""
    record = lookup(dataset)
    if record.torchvision is None:
        able = ", ".join(name for name, d in DATASETS.items() if d.torchvision)
        raise CnnlabError(f"--download works for {able}, not {dataset}")
    found = [c.path for c in candidates(dataset, root) if c.exists()]
    if found:
        return found[0]
    import torchvision

    fetch = getattr(torchvision.datasets, record.torchvision)
    before = set(root.iterdir()) if root.is_dir() else set()
    try:
        for train in (True, False):
            fetch(str(root), train=train, download=True)
    except Exception as e:  # network errors come in many types; the innermost reason is what the user needs
        for made in set(root.iterdir()) - before if root.is_dir() else ():
            if made.is_dir() and not any(p.is_file() for p in made.rglob("*")):
                shutil.rmtree(made)  # an empty FashionMNIST/raw would be found first by the next search
        raise CnnlabError(
            f"downloading {dataset} into {root} failed ({short_reason(e)}). To get it without "
            f"downloading: {record.how_to_get} (the data root is {root})."
        ) from None
    return None


def short_reason(error: BaseException) -> str:
    """The innermost cause in a few words ("Name or service not known"), not torchvision's retry story."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    text = getattr(error, "strerror", None) or str(getattr(error, "reason", None) or error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return re.sub(r"^\[Errno -?\d+\] ", "", re.sub(r"^<urlopen error (.*)>$", r"\1", lines[-1]))
