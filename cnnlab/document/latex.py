"""LaTeX: booktabs tables to `\\input` into a write-up (longtable when long, scaled to the line when wide),
figures as vector PDF, and a whole document around them that compiles with a standard TeX installation
(article, geometry, booktabs, longtable, graphicx: all in TeX Live's latex-base and latex-recommended)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from cnnlab.document.blocks import Block, Figure, Heading, Table, Text
from cnnlab.document.cells import cell, latex_text, line_text, numeric

LONG_ROWS = 30  # a table longer than this breaks across pages (longtable) instead of floating whole
WIDE_COLUMNS = 8  # a table with more columns is scaled to the line width

PREAMBLE = r"""\documentclass[10pt]{article}
\usepackage[margin=2cm]{geometry}
\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage{booktabs,longtable,graphicx}
\begin{document}
"""


def _row(values: list, bold: bool = False) -> str:
    cells = [cell(v, "latex") if v not in (None, "") else "" for v in values]
    return " & ".join(rf"\textbf{{{c}}}" if bold and c else c for c in cells) + r" \\"


def table_latex(b: Table) -> str:
    """One booktabs table, captioned with its title."""
    first = b.rows[0] if b.rows else []
    spec = "".join("r" if i < len(first) and numeric(first[i]) else "l" for i in range(len(b.header)))
    head = " & ".join(latex_text(h) for h in b.header) + r" \\"
    body = [_row(row, n < len(b.emphasis) and b.emphasis[n]) for n, row in enumerate(b.rows)]
    if b.total is not None:
        body += [r"\midrule", _row(b.total)]
    caption = rf"\caption{{{latex_text(b.title)}}}" if b.title else ""
    if len(b.rows) > LONG_ROWS:
        return "\n".join(
            [
                rf"{{\small\begin{{longtable}}{{{spec}}}",
                caption + (r"\\" if caption else ""),
                r"\toprule",
                head,
                r"\midrule\endhead",
                *body,
                r"\bottomrule",
                r"\end{longtable}}",
                "",
            ]
        )
    tabular = "\n".join(
        [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", head, r"\midrule", *body, r"\bottomrule", r"\end{tabular}"]
    )
    if len(b.header) > WIDE_COLUMNS:
        tabular = r"\resizebox{\linewidth}{!}{%" + "\n" + tabular + "}"
    return "\n".join([r"\begin{table}[htbp]", r"\centering\small", caption, tabular, r"\end{table}", ""])


def figure_latex(b: Figure, base: Optional[Path]) -> str:
    path = b.pdf or b.png
    link = Path(os.path.relpath(path, base)).as_posix() if base else path.as_posix()
    return "\n".join(
        [
            r"\begin{figure}[htbp]",
            r"\centering",
            rf"\includegraphics[width=0.8\linewidth]{{{link}}}",
            rf"\caption{{{latex_text(b.caption)}}}",
            r"\end{figure}",
            "",
        ]
    )


def to_latex(blocks: list[Block], base: Optional[Path] = None) -> str:
    """The blocks as LaTeX for a document's body; figure paths relative to `base` (where the .tex goes)."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            command = {1: "section*", 2: "subsection*"}.get(b.level, "subsubsection*")
            out.append(rf"\{command}{{{latex_text(b.title)}}}")
        elif isinstance(b, Text):
            if b.title:
                out.append(rf"\paragraph{{{latex_text(b.title)}}}")
            text = " \\\\\n".join(line_text(line, "latex") for line in b.lines)
            out.append((rf"{{\small {text}}}" if b.note else text) + "\n")
        elif isinstance(b, Table):
            out.append(table_latex(b))
        elif isinstance(b, Figure):
            out.append(figure_latex(b, base))
        else:
            safe = b.text.replace(r"\end{verbatim}", r"\end {verbatim}")
            out.append(
                (rf"\paragraph{{{latex_text(b.title)}}}" if b.title else "")
                + "\n{\\footnotesize\\begin{verbatim}\n"
                + safe.rstrip()
                + "\n\\end{verbatim}}\n"
            )
    return "\n".join(out)


def latex_document(body: str, title: str) -> str:
    """A whole document around `body` (which may \\input table files)."""
    return PREAMBLE + rf"\section*{{{latex_text(title)}}}" + "\n" + body + "\n\\end{document}\n"
