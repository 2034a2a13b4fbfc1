"""What the figures share: tensors made drawable, title and caption, and writing the PNG (and vector copies)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnlab.atomic import write_atomic


class ShownFigure(Figure):
    """A matplotlib Figure that a notebook shows as a PNG even before pyplot (and with it the inline backend's
    display of figures) was ever imported."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def figure(**options) -> Figure:
    """A figure on its own Agg canvas: pyplot never holds it, so the user's backend and figures stay as they were."""
    fig = ShownFigure(**options)
    FigureCanvasAgg(fig)
    return fig


def subplots(nrows: int = 1, ncols: int = 1, squeeze: bool = True, **options):
    """(figure, axes) as pyplot's subplots gives them, on a figure of `figure`."""
    fig = figure(**options)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"  # a whole PNG file begins and ends with these


def picture(t: torch.Tensor) -> np.ndarray:
    """(C, H, W) uint8 or float 0..1 -> what imshow wants: (H, W) grey or (H, W, 3) colour."""
    t = t.detach().cpu()
    t = t.float() / 255 if t.dtype == torch.uint8 else t.float()
    return (t[0] if t.shape[0] == 1 else t.permute(1, 2, 0).clamp(0, 1)).numpy()


def bare(ax) -> None:
    """An image panel: no ticks."""
    ax.set_xticks([])
    ax.set_yticks([])


def save(fig, path: Path, title: str, caption: str = "", **drawn) -> dict:
    """Title the figure, put the caption under it, save it as PNG and close it; return what was drawn."""
    fig.suptitle(title, fontsize=10)
    if caption:
        fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=7.5, wrap=True)
    fig.tight_layout(rect=(0, 0.05 if caption else 0, 1, 1))
    path = write_png(fig, Path(path))
    return {"file": path.name, "title": title, "caption": caption, **drawn}


def write_png(fig, path: Path, vector: bool = False) -> Path:
    """Save `fig` at 150 dpi, atomically (a kill never leaves half a file); pyplot never held it, so nothing keeps
    its memory. `vector`: a chart, also saved as SVG (for HTML) and PDF (for LaTeX) beside it, which stay sharp when
    pasted."""
    path = Path(path)
    write_atomic(path, lambda f: fig.savefig(f, dpi=150, format="png"), binary=True)
    if vector:
        for suffix in ("svg", "pdf"):
            write_atomic(
                path.with_suffix(f".{suffix}"),
                lambda f: fig.savefig(f, format=suffix, metadata={"Date": None} if suffix == "svg" else None),
                binary=True,
            )
    return path


def is_whole_png(path: Path) -> bool:
    """Whether `path` holds a whole PNG (a file left by an older, non-atomic writer may be empty or cut short)."""
    try:
        with open(path, "rb") as f:
            start = f.read(len(PNG_START))
            f.seek(0, 2)
            if f.tell() < len(PNG_START) + len(PNG_END):
                return False
            f.seek(-len(PNG_END), 2)
            return start == PNG_START and f.read() == PNG_END
    except OSError:
        return False
