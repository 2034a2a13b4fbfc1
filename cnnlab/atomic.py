"""Atomic file writes: a reader (or a resumed run after `kill -9`) never sees half a file.

The temporary file is created with mode 0666 and the process's umask applied by the kernel (not mkstemp's
0600), so a renamed file gets the same permissions as any other file the user writes. A full disk is one
CnnlabError naming the folder; the files written before stay as they were.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable

from cnnlab.errors import CnnlabError

TMP_SUFFIX = ".tmp"  # every temporary file is named .<name>.<random>.tmp beside the file it becomes
FULL = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def disk_full(folder: Path, what: str, also: str = "") -> CnnlabError:
    """The one-line message for a full disk (or an exhausted quota) while writing `what` into `folder`."""
    return CnnlabError(
        f"no space left on the disk that holds {folder} while writing {what}; free some space there{also} and try again"
    )


def is_disk_full(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is a full disk (torch.save turns one into a RuntimeError)."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in FULL:
            return True
        error = error.__cause__ or error.__context__
    return False


def read_only(error: BaseException) -> str:
    """What `error` (or an error it was raised from) could not write because it is read-only for this user
    (a read-only folder or mount, a read-only SQLite file), or '' if it is no such error."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in READ_ONLY:
            return str(error.filename or "a file")
        if type(error).__name__ == "OperationalError" and "readonly database" in str(error):  # sqlite3's
            return "the sweep's SQLite storage"
        error = error.__cause__ or error.__context__
    return ""


def cannot_write(what: str) -> CnnlabError:
    """The one-line message for a write refused by the file system."""
    return CnnlabError(
        f"cannot write {what}: it is read-only for this user; make its folder writable (chmod u+w, or "
        f"mount it read-write) or choose another folder (--runs-dir, --out)"
    )


def temporary_beside(path: Path) -> Path:
    """A fresh name for a temporary file or folder that becomes `path` when it is renamed."""
    return path.parent / f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}"


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file beside `path`, opened for writing; the kernel applies the umask to its mode 0666."""
    while True:
        tmp = temporary_beside(path)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def write_atomic(path: Path, write: Callable[[Any], None], binary: bool = False) -> None:
    """Write through `write(fileobj)` into a temporary file beside `path`, fsync it, rename it into place."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temporary(path)
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(path.parent, path.name) from None
        if isinstance(e, OSError) and read_only(e):
            raise cannot_write(str(path)) from e
        raise


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Rewrite a whole JSON-lines file atomically (files here are one line per epoch: small)."""
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def save_torch(path: Path, obj: Any) -> None:
    import torch

    write_atomic(path, lambda f: torch.save(obj, f), binary=True)


def unchanged_for(path: Path) -> float:
    """Seconds since `path` last changed; -1 when it is gone (renamed into place by its writer meanwhile)."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return -1.0


def remove_leftovers(folder: Path, quiet_for: float = 0) -> list[Path]:
    """Delete the temporary files a killed writer left in `folder` and below: in a folder no other process writes
    to (a run folder whose lock is held), all; in a shared one, those unchanged for `quiet_for` seconds (a live
    writer keeps changing its file). The files removed."""
    found = [p for p in Path(folder).rglob(f".*{TMP_SUFFIX}") if p.is_file() and unchanged_for(p) >= quiet_for]
    for p in found:
        p.unlink(missing_ok=True)
    return found
