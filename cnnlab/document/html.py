"""HTML: every user-controlled string escaped, tables that fit the page (wide ones shrink their font, none
scrolls), figures embedded as SVG (vector) or PNG data, code folded where asked. The page around the blocks
(style, print rules, the content-security policy) is the `page.html.j2` template."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from cnnlab.document.blocks import Block, Figure, Heading, Table, Text
from cnnlab.document.cells import cell, line_text, numeric

WIDE_COLUMNS = 9  # a table with more columns is set smaller, so that it fits the page instead of scrolling


def embed(path: Path) -> str:
    """A data: URI of an image file, so that the page needs nothing beside it."""
    kind = {".svg": "image/svg+xml", ".png": "image/png"}[Path(path).suffix]
    return f"data:{kind};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _table(b: Table) -> str:
    first = b.rows[0] if b.rows else []
    right = [i < len(first) and numeric(first[i]) for i in range(len(b.header))]

    left = ["" if r else ' class="l"' for r in right]

    def cells(values: list, tag: str) -> str:
        return "".join(
            f"<{tag}{left[i]}>{cell(v, 'html') if v not in (None, '') else ''}</{tag}>" for i, v in enumerate(values)
        )

    out = ['<table class="wide">' if len(b.header) > WIDE_COLUMNS else "<table>"]
    if b.title:
        out.append(f"<caption>{html.escape(b.title)}</caption>")
    out.append(
        "<thead><tr>"
        + "".join(f"<th{left[i]}>{html.escape(h)}</th>" for i, h in enumerate(b.header))
        + "</tr></thead><tbody>"
    )
    for n, row in enumerate(b.rows):
        bold = n < len(b.emphasis) and b.emphasis[n]
        out.append(('<tr class="em">' if bold else "<tr>") + cells(row, "td") + "</tr>")
    out.append("</tbody>")
    if b.total is not None:
        out.append(f"<tfoot><tr>{cells(b.total, 'th')}</tr></tfoot>")
    return "\n".join(out) + "</table>"


def _figure(b: Figure) -> str:
    source = b.svg if b.svg is not None and b.svg.exists() else b.png
    caption = html.escape(b.caption)
    return f'<figure><img src="{embed(source)}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def to_html(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            level = min(max(b.level, 1), 4)
            out.append(f"<h{level}>{html.escape(b.title)}</h{level}>")
        elif isinstance(b, Text):
            title = f"<b>{html.escape(b.title)}</b><br>" if b.title else ""
            body = "<br>\n".join(line_text(line, "html") for line in b.lines)
            out.append(('<p class="note">' if b.note else "<p>") + title + body + "</p>")
        elif isinstance(b, Table):
            out.append(_table(b))
        elif isinstance(b, Figure):
            out.append(_figure(b))
        else:
            pre = f"<pre>{html.escape(b.text)}</pre>"
            out.append(
                f"<details><summary>{html.escape(b.title)}</summary>{pre}</details>"
                if b.folded
                else (f"<p><b>{html.escape(b.title)}</b></p>" if b.title else "") + pre
            )
    return "\n".join(out)
