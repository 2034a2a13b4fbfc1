"""Markdown: headings, pipe tables (numbers right-aligned), figures as images beside the file, fenced code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from cnnlab.document.blocks import Block, Code, Figure, Heading, Table, Text
from cnnlab.document.cells import cell, line_text, numeric


def _table(b: Table) -> list[str]:
    out = [f"**{cell(b.title, 'markdown')}**\n"] if b.title else []
    first = b.rows[0] if b.rows else []
    align = ["---:" if i < len(first) and numeric(first[i]) else ":---" for i in range(len(b.header))]
    out.append("| " + " | ".join(cell(h, "markdown") for h in b.header) + " |")
    out.append("|" + "|".join(align) + "|")
    for n, row in enumerate(b.rows):
        bold = n < len(b.emphasis) and b.emphasis[n]
        cells = [cell(v, "markdown") for v in row]
        out.append("| " + " | ".join(f"**{c}**" if bold and c else c for c in cells) + " |")
    if b.total is not None:
        out.append(
            "| " + " | ".join(f"**{cell(v, 'markdown')}**" if v not in (None, "") else "" for v in b.total) + " |"
        )
    return out + [""]


def to_markdown(blocks: list[Block], base: Optional[Path] = None) -> str:
    """Markdown of `blocks`; figure links relative to `base` (the folder the file is written to)."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * min(b.level, 4)} {cell(b.title, 'markdown')}\n")
        elif isinstance(b, Text):
            if b.title:
                out.append(f"**{cell(b.title, 'markdown')}**\n")
            bullet = "- " if b.title else ""
            out.append("\n".join(bullet + line_text(line, "markdown") for line in b.lines) + "\n")
        elif isinstance(b, Figure):
            link = Path(os.path.relpath(b.png, base)).as_posix() if base else b.png.as_posix()
            out.append(f"![{cell(b.caption, 'markdown')}]({link})\n\n*{cell(b.caption, 'markdown')}*\n")
        elif isinstance(b, Code):
            fence = "````" if "```" in b.text else "```"
            out.append(
                (f"**{cell(b.title, 'markdown')}**\n\n" if b.title else "") + f"{fence}\n{b.text.rstrip()}\n{fence}\n"
            )
        else:
            out.extend(_table(b))
    return "\n".join(out)
