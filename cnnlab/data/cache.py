"""Decode a dataset once into uint8 tensors on disk; every later run loads them whole in a second.

A cache file `tensors/<dataset>-<key>.pt` (one per source path and decoding) has a record beside it,
`<dataset>-<key>.json`: the fingerprint of its sources (a file's size and modification time; for a folder,
those of every file below it, and every folder's name), a BLAKE2b checksum of the cache file's bytes taken
when it was written, and the file's stat stamp (size, mtime, ctime, inode) at that moment. A load compares
the stamp first: any write to the file through the file system changes its ctime (which no user can set
back), so an equal stamp means the bytes are the ones checksummed, and that check costs one stat() instead of
hashing every byte (benchmarks/cache_integrity.py measures both). A file whose stamp moved is hashed: equal
bytes (a copy, a `touch`) are stamped anew; anything else is a damaged cache, and so is a changed source, a
missing record or a file torch cannot read. A damaged cache is decoded again from its sources with a
one-line notice, never trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Optional

import torch

from cnnlab.atomic import remove_leftovers, save_torch, write_json
from cnnlab.data.decoders import ImageSet
from cnnlab.data.progress import Progress
from cnnlab.data.root import cache_dir
from cnnlab.data.sources import Candidate

CACHE_VERSION = 2  # bump when decoding or the record changes, so old caches are not reused
HASH_CHUNK = 1 << 22


def source_fingerprint(path: Path) -> str:
    """What the decoded tensors depend on: a file's path, size and mtime; for a folder, the relative path, size
    and mtime of every file below it and the name of every folder (a new empty class folder is a new class)."""
    root = Path(path).resolve()
    h = hashlib.blake2b(os.fsencode(root), digest_size=16)
    if not root.is_dir():
        st = root.stat()
        h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
        return h.hexdigest()
    seen, todo = set(), [b""]
    while todo:
        rel = todo.pop()
        with os.scandir(os.path.join(os.fsencode(root), rel) if rel else os.fsencode(root)) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            name = os.path.join(rel, e.name) if rel else e.name
            try:
                st = e.stat()
            except FileNotFoundError:  # a broken symbolic link
                h.update(b"L " + name + b"\n")
                continue
            if e.is_dir():
                if (st.st_dev, st.st_ino) not in seen:  # a symbolic link back up the tree is walked once
                    seen.add((st.st_dev, st.st_ino))
                    h.update(b"D " + name + b"\n")
                    todo.append(name)
            else:
                h.update(b"F " + name + f" {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def content_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def stamp(path: Path) -> list[int]:
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def cache_path(name: str, source: Path, variant: str = "") -> Path:
    """The cache file of dataset `name` decoded from `source` (one file per source path and variant)."""
    key = hashlib.blake2b(f"{Path(source).resolve()}|{variant}|{CACHE_VERSION}".encode(), digest_size=8).hexdigest()
    return cache_dir() / "tensors" / f"{name}-{key}{f'-{variant}' if variant else ''}.pt"


def record_path(path: Path) -> Path:
    return path.with_suffix(".json")


def problem(path: Path, sources: str) -> Optional[str]:
    """Why the cache file `path` cannot be used for sources with fingerprint `sources`, or None if it can.
    A file whose stamp moved but whose bytes still match is stamped anew (where the cache folder is writable)."""
    try:
        record = json.loads(record_path(path).read_text())
        checksum, stamped, recorded_sources = record["blake2b"], record["stamp"], record["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return "has no readable record of its checksum"
    if recorded_sources != sources:
        return "was decoded from an earlier state of its source (files were added, removed or changed since)"
    if stamp(path) == stamped:
        return None
    if content_hash(path) != checksum:
        return "does not match its checksum (it was damaged or changed after it was written)"
    try:
        write_json(record_path(path), {**record, "stamp": stamp(path)})
    except OSError:
        pass  # a read-only cache: the checksum is verified again next time
    return None


LEFT_FOR = 600  # seconds a temporary file of the tensor cache lies unchanged before it counts as a killed write's


def write_cache(path: Path, blob: dict, sources: str, source: Path) -> None:
    """The tensors, then their record (a cache file without its record is not used); temporary files that killed
    writes left in the cache folder go first."""
    remove_leftovers(path.parent, quiet_for=LEFT_FOR)
    save_torch(path, blob)
    write_json(
        record_path(path),
        {
            "version": CACHE_VERSION,
            "source": str(source),
            "sources": sources,
            "blake2b": content_hash(path),
            "stamp": stamp(path),
        },
    )


def read_cache(path: Path) -> Optional[dict]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a file torch cannot read is a damaged cache, decoded again like any other
        return None


def load_cached(
    name: str, candidate: Candidate, variant: str = "", progress: Optional[Progress] = None
) -> tuple[ImageSet, ImageSet]:
    """(train, test) from the tensor cache, decoding the source first if this is the first time, or if the cache
    is damaged or older than its source (telling `progress` how far decoding is)."""
    path = cache_path(name, candidate.path, variant)
    sources = source_fingerprint(candidate.path)
    why = problem(path, sources) if path.exists() else "missing"
    blob = read_cache(path) if why is None else None
    if blob is None:
        if why != "missing":
            print(
                f"notice: tensor cache {path} {why or 'cannot be read by torch'}; decoding {candidate.path} again",
                file=sys.stderr,
                flush=True,
            )
        noted = progress and (lambda done, total, what: progress(done, total, f"{what} (first run only)"))
        train, test = candidate.read(candidate.path, progress=noted)
        blob = {
            "classes": train.classes,
            "train": {"images": train.images.contiguous(), "labels": train.labels},
            "test": {"images": test.images.contiguous(), "labels": test.labels},
        }
        write_cache(path, blob, sources, candidate.path)
    return tuple(ImageSet(blob[s]["images"], blob[s]["labels"], list(blob["classes"])) for s in ("train", "test"))
