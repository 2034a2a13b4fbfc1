"""What the figures share: tensors made drawable, title and caption, and writing the PNG (and vector copies)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch


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
    """Save `fig` at 150 dpi (its folder made first) and close it, so figures drawn in a loop free their memory.
    `vector`: a chart, also saved as SVG (for HTML) and PDF (for LaTeX) beside it, which stay sharp when pasted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    if vector:
        for suffix in (".svg", ".pdf"):
            fig.savefig(path.with_suffix(suffix), metadata={"Date": None} if suffix == ".svg" else None)
    plt.close(fig)
    return path
