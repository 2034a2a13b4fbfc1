"""The terminal: tables fitted to its width (a table too wide leaves out its least needed columns and says so
under it; a cell is folded, never cut short), paragraphs under a bold title, figures as their file names."""

from __future__ import annotations

import io
import shutil
from typing import Any, Optional

from cnnlab.document.blocks import Block, Code, Figure, Heading, Table, Text
from cnnlab.document.cells import cell, line_text, numeric


def _rich_table(b: Table, keep: list[int]):
    """A rich table of the columns `keep` of `b`; numbers right-aligned; every cell folds rather than being cut."""
    from rich.markup import escape
    from rich.table import Table as RichTable

    first = b.rows[0] if b.rows else []
    t = RichTable(title=escape(b.title), title_justify="left", title_style="bold", show_footer=b.total is not None)
    for i in keep:
        footer = cell(b.total[i], "table") if b.total is not None and b.total[i] not in (None, "") else ""
        t.add_column(
            escape(b.header[i]),
            footer=escape(footer),
            overflow="fold",
            justify="right" if i < len(first) and numeric(first[i]) else "left",
        )
    for n, row in enumerate(b.rows):
        bold = n < len(b.emphasis) and b.emphasis[n]
        t.add_row(*(escape(cell(row[i], "table")) for i in keep), style="bold" if bold else None)
    return t


def fitted_table(b: Table, console) -> tuple[Any, list[str]]:
    """(rich table, headers left out): the columns `b.drop` names are left out, in order, until it fits."""
    from rich.measure import Measurement

    keep = list(range(len(b.header)))
    dropped: list[str] = []
    wide = console.options.update_width(10**6)
    for group in b.drop:
        if Measurement.get(console, wide, _rich_table(b, keep)).maximum <= console.width:
            break
        for header in (group,) if isinstance(group, str) else group:
            if header in b.header and b.header.index(header) in keep:
                keep.remove(b.header.index(header))
                dropped.append(header)
    return _rich_table(b, keep), dropped


def _paragraph(b: Text):
    from rich.text import Text as RichText

    text = RichText()
    if b.title:
        text.append(b.title + "\n", style="bold")
    text.append("\n".join(line_text(line, "table") for line in b.lines), style="italic" if b.note else "")
    return text


def rich_blocks(blocks: list[Block], console) -> list:
    """Renderables for `console`, one or two a block."""
    from rich.text import Text as RichText

    out: list = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(RichText(b.title, style="bold underline" if b.level <= 2 else "bold"))
        elif isinstance(b, Text):
            out.append(_paragraph(b))
        elif isinstance(b, Figure):
            out.append(RichText(f"figure: {b.caption}: {b.png}"))
        elif isinstance(b, Code):
            out.append(RichText((b.title + "\n" if b.title else "") + b.text.rstrip()))
        else:
            table, dropped = fitted_table(b, console)
            out.append(table)
            if dropped:
                out.append(
                    RichText(
                        f"left out to fit {console.width} columns: {', '.join(dropped)} "
                        "(a wider terminal or --format markdown shows them)",
                        style="italic",
                    )
                )
    return out


def terminal_width() -> int:
    """The terminal's width ($COLUMNS first); 160 where output goes to a file or a pipe, which have no width."""
    return shutil.get_terminal_size((160, 24)).columns


def to_text(blocks: list[Block], width: Optional[int] = None) -> str:
    """The terminal rendering as plain text, `width` columns wide (default: the terminal's)."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width or terminal_width(), color_system=None, highlight=False)
    for r in rich_blocks(blocks, console):
        console.print(r)
        console.print()
    return console.file.getvalue()
