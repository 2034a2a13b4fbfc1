"""Where datasets are looked for (the data root) and where decoded copies are kept (the cache)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def data_root(option: Optional[str] = None) -> Path:
    """--data-dir, else $CNNLAB_DATA, else ~/.cache/cnnlab/data."""
    chosen = option or os.environ.get("CNNLAB_DATA")
    return Path(chosen).expanduser().resolve() if chosen else cache_dir() / "data"


def cache_dir() -> Path:
    """$CNNLAB_CACHE, else ~/.cache/cnnlab: extracted archives and uint8 tensor caches
    (the data root may be read-only)."""
    path = Path(os.environ.get("CNNLAB_CACHE") or Path.home() / ".cache" / "cnnlab").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
