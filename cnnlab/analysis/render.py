"""Formatting: a document of tables and paragraphs, written as a terminal table, Markdown, LaTeX or CSV.

Cells keep their raw values (integers, ratios, sympy formulas, shapes, text) until here, so every format
writes them its own way: 1,234 and NF*k^2 in a terminal, `NF*k^2` in Markdown, $\\mathrm{NF} k^{2}$ in LaTeX
(a name of several letters is one upright name, not a product of italic letters).

The terminal table fits the terminal: a table too wide leaves out its least needed columns (each table
says which may go) and says so under it; a cell is folded, never cut short.
"""
from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass
from typing import Any, Optional, Union

import sympy as sp


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[Any]]
    total: Optional[list[Any]] = None
    drop: tuple = ()  # headers (or tuples of headers that go together) that may be left out to fit a narrow terminal, the first first


@dataclass
class Text:
    lines: list  # each a string, or a list of strings and values (numbers, formulas) formatted per format
    title: str = ""


def line_text(line, fmt: str) -> str:
    if isinstance(line, str):
        return _latex_text(line) if fmt == "latex" else line
    return "".join(line_text(part, fmt) if isinstance(part, str) else cell(part, fmt) for part in line)


Block = Union[Table, Text]


def human_bytes(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


LATEX_ESCAPES = (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"), ("_", r"\_"),
                 ("^", r"\^{}"), ("~", r"\~{}"), ("->", r"$\rightarrow$"))


def _latex_text(s: str) -> str:
    for a, b in LATEX_ESCAPES:
        s = s.replace(a, b)
    return s


def _float(v: float) -> str:
    """Three significant digits, thousands separated: 0.0123, 4.24, 96.6, 1,234."""
    if v == 0 or abs(v) >= 100:
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def cell(value: Any, fmt: str) -> str:
    """One cell in format `fmt` (table, markdown, latex, csv)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, sp.Basic) and value.is_Integer:
        value = int(value)
    if isinstance(value, int):
        return str(value) if fmt == "csv" else f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}" if fmt == "csv" else _float(value)
    if isinstance(value, sp.Basic):
        if fmt == "latex":
            return f"${latex_formula(value)}$"
        text = str(value).replace("**", "^")
        return f"`{text}`" if fmt == "markdown" else text
    if isinstance(value, (list, tuple)):
        parts = [cell(v, "csv" if fmt != "latex" else fmt).strip("$") for v in value]
        parts = [f"({p})" if isinstance(v, sp.Add) else p for v, p in zip(value, parts)]  # 8 x (H - 4) x (W - 4)
        if fmt == "latex":
            return "$" + r" \times ".join(parts) + "$"
        text = " x ".join(parts)
        return f"`{text}`" if fmt == "markdown" and any(isinstance(v, sp.Basic) and not v.is_Integer for v in value) else text
    text = str(value)
    if fmt == "latex":
        return _latex_text(text)
    if fmt == "markdown":
        return text.replace("|", "\\|")
    return text


def latex_formula(value: sp.Basic) -> str:
    """LaTeX of a formula with each name of several letters upright and whole: NF is \\mathrm{NF}, not N times F."""
    names = {s: r"\mathrm{%s}" % s.name.replace("_", r"\_") for s in value.free_symbols if len(s.name) > 1}
    return sp.latex(value, symbol_names=names)


def _numeric(value) -> bool:
    return isinstance(value, (int, float, sp.Basic)) and not isinstance(value, bool)


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Text):
            if b.title:
                out.append(f"### {b.title}\n")
            out.append("\n".join(f"- {line_text(line, 'markdown')}" if b.title else line_text(line, "markdown") for line in b.lines) + "\n")
            continue
        out.append(f"### {b.title}\n")
        first = b.rows[0] if b.rows else []
        align = ["---:" if i < len(first) and _numeric(first[i]) else ":---" for i in range(len(b.header))]
        out.append("| " + " | ".join(b.header) + " |")
        out.append("|" + "|".join(align) + "|")
        for row in b.rows:
            out.append("| " + " | ".join(cell(v, "markdown") for v in row) + " |")
        if b.total is not None:
            out.append("| " + " | ".join(f"**{cell(v, 'markdown')}**" if v not in (None, "") else "" for v in b.total) + " |")
        out.append("")
    return "\n".join(out)


def to_latex(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Text):
            if b.title:
                out.append(f"\\paragraph{{{_latex_text(b.title)}}}")
            out.append(" \\\\\n".join(line_text(line, "latex") for line in b.lines) + "\n")
            continue
        first = b.rows[0] if b.rows else []
        spec = "".join("r" if i < len(first) and _numeric(first[i]) else "l" for i in range(len(b.header)))
        out.append(f"% {_latex_text(b.title)}")
        out.append(f"\\begin{{tabular}}{{{spec}}}\n\\hline")
        out.append(" & ".join(_latex_text(h) for h in b.header) + r" \\ \hline")
        for row in b.rows:
            out.append(" & ".join(cell(v, "latex") for v in row) + r" \\")
        if b.total is not None:
            out.append(r"\hline" + "\n" + " & ".join(cell(v, "latex") if v not in (None, "") else "" for v in b.total) + r" \\")
        out.append("\\hline\n\\end{tabular}\n")
    return "\n".join(out)


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(table.header)
    for row in table.rows:
        writer.writerow([cell(v, "csv") for v in row])
    if table.total is not None:
        writer.writerow([cell(v, "csv") if v not in (None, "") else "" for v in table.total])
    return buf.getvalue()


def _rich_table(b: Table, keep: list[int]):
    """A rich table of the columns `keep` of `b`; numbers right-aligned; every cell folds rather than being cut."""
    from rich.markup import escape
    from rich.table import Table as RichTable

    first = b.rows[0] if b.rows else []
    t = RichTable(title=escape(b.title), title_justify="left", title_style="bold", show_footer=b.total is not None)
    for i in keep:
        footer = cell(b.total[i], "table") if b.total is not None and b.total[i] not in (None, "") else ""
        t.add_column(escape(b.header[i]), footer=escape(footer), overflow="fold",
                     justify="right" if i < len(first) and _numeric(first[i]) else "left")
    for row in b.rows:
        t.add_row(*(escape(cell(row[i], "table")) for i in keep))
    return t


def fitted_table(b: Table, console) -> tuple[Any, list[str]]:
    """(rich table, headers left out): the columns `b.drop` names are left out, in order, until it fits the console."""
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


def rich_blocks(blocks: list[Block], console):
    """Renderables for `console`: tables fitted to its width (with a line naming what was left out), paragraphs under a bold title."""
    from rich.text import Text as RichText

    out = []
    for b in blocks:
        if isinstance(b, Text):
            text = RichText()
            if b.title:
                text.append(b.title + "\n", style="bold")
            text.append("\n".join(line_text(line, "table") for line in b.lines))
            out.append(text)
            continue
        table, dropped = fitted_table(b, console)
        out.append(table)
        if dropped:
            out.append(RichText(f"left out to fit {console.width} columns: {', '.join(dropped)} "
                                "(a wider terminal or --format markdown shows them)", style="italic"))
    return out


def terminal_width() -> int:
    """The terminal's width ($COLUMNS first); 160 where output goes to a file or a pipe, which have no width."""
    return shutil.get_terminal_size((160, 24)).columns


def to_text(blocks: list[Block], width: Optional[int] = None) -> str:
    """The terminal table as plain text, `width` columns wide (default: the terminal's)."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width or terminal_width(), color_system=None, highlight=False)
    for r in rich_blocks(blocks, console):
        console.print(r)
        console.print()
    return console.file.getvalue()


def render(blocks: list[Block], fmt: str) -> str:
    if fmt == "markdown":
        return to_markdown(blocks)
    if fmt == "latex":
        return to_latex(blocks)
    return to_text(blocks)
