"""Decode a dataset once into uint8 tensors on disk; every later run loads them whole in a second."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import torch

from cnnlab.atomic import save_torch
from cnnlab.data.root import cache_dir
from cnnlab.data.decoders import ImageSet
from cnnlab.data.progress import Progress
from cnnlab.data.sources import Candidate

CACHE_VERSION = 1  # bump when decoding changes, so old caches are not reused


def _fingerprint(path: Path) -> str:
    """Identify a source by path, size and modification time (of the file, or of a folder's direct entries)."""
    st = path.stat()
    parts = [str(path.resolve()), str(st.st_size), str(int(st.st_mtime)), str(CACHE_VERSION)]
    if path.is_dir():
        parts += sorted(f"{p.name}:{p.stat().st_mtime_ns}" for p in path.iterdir())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def load_cached(name: str, candidate: Candidate, variant: str = "",
                progress: Optional[Progress] = None) -> tuple[ImageSet, ImageSet]:
    """(train, test) from the tensor cache, decoding the source first if this is the first time (telling
    `progress` how far it is)."""
    key = _fingerprint(candidate.path) + (f"-{variant}" if variant else "")
    path = cache_dir() / "tensors" / f"{name}-{key}.pt"
    if path.exists():
        blob = torch.load(path, weights_only=True)
    else:
        noted = progress and (lambda done, total, what: progress(done, total, f"{what} (first run only)"))
        train, test = candidate.read(candidate.path, progress=noted)
        blob = {"classes": train.classes,
                "train": {"images": train.images.contiguous(), "labels": train.labels},
                "test": {"images": test.images.contiguous(), "labels": test.labels}}
        save_torch(path, blob)
    return tuple(ImageSet(blob[s]["images"], blob[s]["labels"], list(blob["classes"])) for s in ("train", "test"))
