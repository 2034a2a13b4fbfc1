"""Results shown one way: blocks (cnnlab.document.blocks) written by one writer per format."""

from cnnlab.document.blocks import Block, Code, Figure, Heading, Table, Text
from cnnlab.document.cells import Fixed, Link, cell, human_bytes, latex_formula, line_text
from cnnlab.document.csvfile import to_csv
from cnnlab.document.html import to_html
from cnnlab.document.latex import to_latex
from cnnlab.document.markdown import to_markdown
from cnnlab.document.terminal import rich_blocks, terminal_width, to_text


def render(blocks: list[Block], fmt: str) -> str:
    """`blocks` as text in `fmt`: table (the terminal's), markdown, latex (a body to \\input) or html (a fragment)."""
    if fmt == "markdown":
        return to_markdown(blocks)
    if fmt == "latex":
        return to_latex(blocks)
    if fmt == "html":
        return to_html(blocks)
    return to_text(blocks)


__all__ = [
    "Fixed",
    "Link",
    "Block",
    "Code",
    "Figure",
    "Heading",
    "Table",
    "Text",
    "cell",
    "human_bytes",
    "latex_formula",
    "line_text",
    "to_csv",
    "to_html",
    "to_latex",
    "to_markdown",
    "rich_blocks",
    "terminal_width",
    "to_text",
    "render",
]
