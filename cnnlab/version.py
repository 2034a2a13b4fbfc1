"""Which cnnlab made a record: the installed version and, when run from a git checkout, its commit.

Every record (summary.json, compare.json, a count) and every report carries both, so a table handed in
can be traced to the code that produced it.
"""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Optional


@functools.lru_cache(maxsize=1)
def version() -> str:
    try:
        return metadata.version("cnnlab")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@functools.lru_cache(maxsize=1)
def git_commit() -> Optional[str]:
    """The checkout's commit (with '+changes' when files differ from it); None outside a git checkout."""
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None
    try:

        def git(*args: str) -> str:
            return subprocess.run(
                ["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()

        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "cnnlab")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if dirty else "")


def made_by() -> str:
    """'cnnlab 0.1.0 (commit abc1234)': the line a report ends with."""
    commit = git_commit()
    return f"cnnlab {version()}" + (
        f" (commit {commit[:12]}{'+changes' if commit.endswith('+changes') else ''})" if commit else ""
    )
