"""A dataset given as a folder or an archive: extract archives once into the cache, then find a known layout inside.

Not torchvision's extract_archive: it extracts tar members without tarfile's "data" filter, so an
archive entry such as ../x is written outside the target folder (checked with torchvision 0.29 on
Python 3.11); data.path may name any archive, so extraction here refuses such entries.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from cnnlab.atomic import TMP_SUFFIX, disk_full, is_disk_full, temporary_beside, unchanged_for
from cnnlab.data.decoders import Classes, ImageSet, Layout
from cnnlab.data.progress import Progress, counter
from cnnlab.data.root import cache_dir
from cnnlab.errors import CnnlabError

BROKEN = (
    tarfile.TarError,
    zipfile.BadZipFile,
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
)  # a corrupt or truncated archive

try:  # folders are locked with flock; Windows has no lock on a folder, so there nothing is removed as unheld
    import fcntl

    SHARED, EXCLUSIVE, NOWAIT = fcntl.LOCK_SH, fcntl.LOCK_EX, fcntl.LOCK_NB
except ImportError:
    fcntl, (SHARED, EXCLUSIVE, NOWAIT) = None, (1, 2, 4)
UNLOCKED = -1  # what _lock holds where folders cannot be locked


def _unpack(archive: Path, folder: Path, progress: Optional[Progress]) -> None:
    what = f"extracting {archive.name} into {folder.parent}"
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            tick = counter(progress, len(members), what)
            for member in members:
                z.extract(member, folder)
                tick()
    else:
        with open(archive, "rb") as raw, tarfile.open(fileobj=raw) as t:
            _extract_tar(t, folder, raw, archive.stat().st_size, progress, what)


def _extraction_error(e: BaseException, archive: Path, folder: Path) -> BaseException:
    if is_disk_full(e):
        return disk_full(
            folder,
            f"the files of {archive} (none were kept)",
            also=" (or set CNNLAB_CACHE to a folder on a disk with room)",
        )
    if isinstance(e, tarfile.FilterError):  # tarfile's "data" filter: a path outside, a link, a device...
        return CnnlabError(
            f"refused to extract {archive}: its member {e.tarinfo.name[:200]!r} is unsafe ({e}); "
            "an archive whose files would land outside its folder is not extracted, check where it "
            "came from"
        )
    if isinstance(e, BROKEN):
        return CnnlabError(f"cannot extract {archive}: {e}; the archive is corrupt or truncated, get it again")
    if isinstance(e, OSError):
        return CnnlabError(f"cannot extract {archive} into {folder}: {e}")
    return e


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def extract_once(archive: Path, progress: Optional[Progress] = None) -> Path:
    """The archive extracted into the cache: once per archive state (its path, then its size and mtime, name the
    folder). Extractions of an earlier state of the same archive are then removed (each is as large as the archive
    unpacked, and no cache reads them any more) unless a process still reads one, and so are the temporary folders
    of killed extractions."""
    st = archive.stat()
    same_archive = f"{archive.name.split('.')[0]}-{_key(str(archive.resolve()))}-"
    target = cache_dir() / "extracted" / f"{same_archive}{_key(f'{st.st_size}|{st.st_mtime_ns}')}"
    if not target.is_dir():
        _extract_into(archive, target, progress)
    for earlier in target.parent.glob(f"{same_archive}*"):
        if earlier != target:
            _remove_unless_held(earlier)
    for left in target.parent.glob(f".*{TMP_SUFFIX}"):  # a killed extraction's; a new one may not be held yet
        if unchanged_for(left) > 60:
            _remove_unless_held(left)
    return target


def _extract_into(archive: Path, target: Path, progress: Optional[Progress]) -> None:
    """Into a temporary folder, held (flock) while it is filled, renamed into place when complete (so a folder of
    that name is whole) and removed when extraction fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, held = temporary_beside(target), None
    try:
        tmp.mkdir()
        held = _lock(tmp, EXCLUSIVE)  # a temporary folder nobody holds is a killed extraction's
        _unpack(archive, tmp, progress)
        tmp.rename(target)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and target.is_dir():
            return  # another process finished the same extraction first: use its folder
        error = _extraction_error(e, archive, target.parent)
        if error is e:
            raise
        raise error from None
    finally:
        _release(held)


def _lock(folder: Path, how: int) -> Optional[int]:
    """An open descriptor of `folder` holding an flock (`how`; it ends with the process, even after kill -9), or
    None when the folder is gone or, with NOWAIT, another process holds it (or folders cannot be locked)."""
    if fcntl is None:
        return UNLOCKED if folder.is_dir() and not how & NOWAIT else None
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, how)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove_unless_held(folder: Path) -> None:
    """Remove an extraction (or a temporary one) that no process holds: one being read or filled stays."""
    fd = _lock(folder, EXCLUSIVE | NOWAIT)
    if fd is not None:
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            _release(fd)


def _release(fd: Optional[int]) -> None:
    if fd is not None and fd != UNLOCKED:
        os.close(fd)


def _still_at(fd: int, folder: Path) -> bool:
    """Whether the folder open as `fd` is still the one at `folder` (not removed, nor removed and made again)."""
    if fd == UNLOCKED:
        return folder.is_dir()
    try:
        return os.path.samestat(os.fstat(fd), os.stat(folder))
    except FileNotFoundError:
        return False


@contextmanager
def extracted(archive: Path, progress: Optional[Progress] = None) -> Iterator[Path]:
    """The archive's extraction (extract_once), held by a shared lock while it is read, so that a process
    extracting a newer state of the archive leaves it in place until this one is done."""
    for _ in range(3):
        folder = extract_once(archive, progress)
        fd = _lock(folder, SHARED)
        if fd is not None and not _still_at(fd, folder):
            _release(fd)
            fd = None
        if fd is None:  # removed between its extraction and the lock: extract again
            continue
        try:
            yield folder
            return
        finally:
            _release(fd)
    raise CnnlabError(f"the extraction of {archive} keeps being removed by another process; try again")


def _extract_tar(t: tarfile.TarFile, target: Path, raw, size: int, progress: Optional[Progress], what: str) -> None:
    """Member by member, so that the compressed bytes read from `raw` so far can say how far it is."""
    read = 0
    if progress:
        progress(0, size, what)
    for member in t:
        t.extract(member, target, filter="data")
        if progress and min(raw.tell(), size - 1) != read:  # the end is told once, below
            read = min(raw.tell(), size - 1)
            progress(read, size, what)
    if progress:
        progress(size, size, what)


def find_inside(folder: Path, test: Callable[[Path], bool], depth: int = 3) -> Optional[Path]:
    """The first folder at most `depth` levels below `folder` (itself included) that passes `test`."""
    level = [folder]
    for _ in range(depth + 1):
        for f in level:
            if test(f):
                return f
        level = [c for f in level for c in sorted(f.iterdir()) if c.is_dir()]
    return None


def read_folder_or_archive(
    path: Path, layouts: Sequence[Layout], size: Optional[int], classes: Classes, progress: Optional[Progress] = None
) -> tuple[ImageSet, ImageSet]:
    """Decode the first of `layouts` found in the folder `path`, or in the archive `path` once extracted."""
    if path.is_file():
        with extracted(path, progress) as folder:
            return _read_layouts(path, folder, layouts, size, classes, progress)
    return _read_layouts(path, path, layouts, size, classes, progress)


def _read_layouts(
    path: Path,
    folder: Path,
    layouts: Sequence[Layout],
    size: Optional[int],
    classes: Classes,
    progress: Optional[Progress],
) -> tuple[ImageSet, ImageSet]:
    for layout in layouts:
        found = find_inside(folder, layout.recognise)
        if found is not None:
            return layout.read(found, size, classes, progress)
    raise CnnlabError(
        f"{path} holds none of: {'; '.join(layout.what for layout in layouts)}. "
        "Point to the folder or archive that holds the dataset, or get it again"
    )
