"""What the invariance report, still written through its own templates, needs: numbers as text, images
embedded."""
from __future__ import annotations

import base64
from pathlib import Path


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def embed_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
